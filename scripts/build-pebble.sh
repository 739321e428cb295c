#!/usr/bin/env bash
# Builds Pebble (Let's Encrypt's test ACME server) and pebble-challtestsrv (its
# DNS server), v2.10.3 pinned in tools/go.mod so they never enter the
# gateway's own go.mod, once, and caches them with Pebble's bundled test
# certificates (the HTTPS certificate of its directory, its key, and the root
# it chains to); prints the cache directory. For the ACME tests
# (internal/testsvc.Pebble). The first build takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v2.10.3
cache="${PORTCULLIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/pebble-$version"
if [ ! -x "$cache/pebble" ] || [ ! -x "$cache/pebble-challtestsrv" ] || [ ! -f "$cache/certs/pebble.minica.pem" ]; then
  pinned=$(cd tools && go list -m -f '{{.Version}}' github.com/letsencrypt/pebble/v2)
  if [ "$pinned" != "$version" ]; then
    echo "build-pebble: tools/go.mod pins Pebble $pinned, this script (and internal/testsvc) $version" >&2
    exit 1
  fi
  mkdir -p "$cache"
  echo "build-pebble: building Pebble $version into $cache" >&2
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd tools && go build -trimpath -o "$tmp/pebble" github.com/letsencrypt/pebble/v2/cmd/pebble)
  (cd tools && go build -trimpath -o "$tmp/pebble-challtestsrv" github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv)
  src=$(cd tools && go list -m -f '{{.Dir}}' github.com/letsencrypt/pebble/v2)
  mkdir -p "$tmp/certs/localhost"
  cp "$src/test/certs/localhost/cert.pem" "$src/test/certs/localhost/key.pem" "$tmp/certs/localhost/"
  cp "$src/test/certs/pebble.minica.pem" "$tmp/certs/"
  chmod -R u+w "$tmp/certs" # the module cache is read-only
  rm -rf "$cache/certs"
  mv "$tmp/certs" "$cache/certs"
  mv "$tmp/pebble-challtestsrv" "$cache/pebble-challtestsrv"
  mv "$tmp/pebble" "$cache/pebble"
fi
echo "$cache"

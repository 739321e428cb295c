#!/usr/bin/env bash
# Builds h2spec (an HTTP/2 conformance tester: it speaks raw frames to a
# server and checks each answer against RFC 7540/7541), v2.2.1 pinned in
# tools/go.mod so it never enters the gateway's own go.mod, once, and caches
# the binary; prints its path. For `make h2spec` (scripts/conformance.sh,
# docs/conformance/h2spec.md). The first build takes a few seconds.
#
# h2spec has no go.mod of its own (it predates modules, hence
# "+incompatible"), so its dependencies (cobra, x/net, fatih/color) are the
# versions tools/go.mod already resolves for the other tools.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v2.2.1
cache="${PORTCULLIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/h2spec-$version"
bin="$cache/h2spec"
if [ ! -x "$bin" ]; then
  pinned=$(cd tools && go list -m -f '{{.Version}}' github.com/summerwind/h2spec)
  if [ "$pinned" != "$version+incompatible" ]; then
    echo "build-h2spec: tools/go.mod pins h2spec $pinned, this script $version" >&2
    exit 1
  fi
  mkdir -p "$cache"
  echo "build-h2spec: building h2spec $version into $cache" >&2
  # h2spec's own Makefile stamps its version this way; without it
  # `h2spec --version` says 2.0.0, which would mislead a report.
  (cd tools && go build -trimpath -ldflags "-X main.VERSION=${version#v} -X main.COMMIT=module" \
    -o "$bin.tmp" github.com/summerwind/h2spec/cmd/h2spec)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"

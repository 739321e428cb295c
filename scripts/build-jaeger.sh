#!/usr/bin/env bash
# Builds Jaeger (all-in-one, v1.76.0, pinned in tools/go.mod so it never enters
# the gateway's own go.mod) once and caches the binary; prints its path. The
# first build downloads and compiles for about 8-10 minutes on 2 cores and
# gives a ~120 MB binary; later runs reuse it. For the tracing tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PORTCULLIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/jaeger-v1.76.0"
bin="$cache/jaeger"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  echo "build-jaeger: building Jaeger v1.76.0 into $cache (first time: several minutes)" >&2
  (cd tools && go build -trimpath -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"

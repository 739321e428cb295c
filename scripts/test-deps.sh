#!/usr/bin/env bash
# Installs what `make test` needs, once, before any test runs (tests never
# call apt-get themselves). Safe to re-run: it installs only what is missing.
# Features that test against real services (redis-server, Jaeger, Chromium)
# add their installs here.
set -euo pipefail

command -v go >/dev/null || { echo "test-deps: Go 1.26+ is required"; exit 1; }

need=()
# (Debian package names of test dependencies go into need+=(...) here.)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "test-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
go mod download
echo "test-deps: ok"

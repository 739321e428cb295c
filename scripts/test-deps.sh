#!/usr/bin/env bash
# Installs what `make test` needs, once, before any test runs (tests never
# call apt-get themselves). Safe to re-run: it installs only what is missing.
# Features that test against real services (redis-server, Jaeger, Chromium)
# add their installs here.
set -euo pipefail

command -v go >/dev/null || { echo "test-deps: Go 1.26+ is required"; exit 1; }

need=()
# Real services the tests start privately on ephemeral ports (internal/testsvc):
# redis-server, and PostgreSQL's initdb/pg_ctl (run as the postgres user via
# runuser when the tests run as root) unless a server answers on 127.0.0.1:5432.
command -v redis-server >/dev/null || need+=(redis-server)
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v runuser >/dev/null || need+=(util-linux)
# promtool checks the /metrics exposition.
command -v promtool >/dev/null || need+=(prometheus)
# The terminal dashboard runs inside tmux; the web monitor in a headless
# Chromium (driven by chromedp from the e2e module).
command -v tmux >/dev/null || need+=(tmux)
command -v chromium >/dev/null || need+=(chromium)
# Deployment proofs: a real nginx edge, docker-compose's parser, file(1)
# for the static-binary check.
command -v nginx >/dev/null || need+=(nginx)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v file >/dev/null || need+=(file)
# make stack's test (openssl for its certificate, python3 for its echo
# upstreams) and make load-test's (wrk).
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "test-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
go mod download
(cd e2e && go mod download)
# Jaeger v1.76.0 for the tracing tests: built once (about 8-10 minutes the
# first time on 2 cores), then cached.
./scripts/build-jaeger.sh >/dev/null
./scripts/build-pebble.sh >/dev/null
echo "test-deps: ok"

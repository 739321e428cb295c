#!/usr/bin/env bash
# Load test a running gateway with wrk (or hey when wrk is missing).
#
#   scripts/load-test.sh [URL]                    default http://127.0.0.1:9777/health
#   DURATION=60s CONNECTIONS=500 THREADS=8 scripts/load-test.sh http://127.0.0.1:9777/api/echo/
#   HEADER='X-API-Key: my-key' scripts/load-test.sh http://127.0.0.1:9777/api/private/
#
# Load the public listener (GATEWAY_PORT), the one clients reach; its /health
# says the status only. Not the ops listener (OPS_ADDR, 9778): it has no
# connection caps or per-IP limits, so numbers from it say nothing about
# what clients get. 127.0.0.1 rather than localhost: a gateway bound to
# 127.0.0.1 (.env.production) does not answer on ::1.
#
# Mind the gateway's own per-IP limits (MAX_REQUESTS_PER_SECOND, MAX_BURST_SIZE,
# DDOS_THRESHOLD): one load generator is one client IP, so most answers will be
# 429 unless you raise them or allow-list the generator (IP_WHITELIST); wrk
# then reports "Non-2xx or 3xx responses".
set -euo pipefail

url="${1:-http://127.0.0.1:9777/health}"
duration="${DURATION:-30s}"
connections="${CONNECTIONS:-100}"
threads="${THREADS:-4}"
header="${HEADER:-}"

if command -v wrk >/dev/null; then
  # wrk prints "Non-2xx or 3xx responses: N" when any were not 2xx/3xx.
  args=(-t"$threads" -c"$connections" -d"$duration" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  echo "load-test: wrk ${args[*]} $url"
  exec wrk "${args[@]}" "$url"
elif command -v hey >/dev/null; then
  args=(-z "$duration" -c "$connections")
  [ -n "$header" ] && args+=(-H "$header")
  echo "load-test: hey ${args[*]} $url"
  exec hey "${args[@]}" "$url"
else
  echo "load-test: needs wrk (apt-get install wrk) or hey (go install github.com/rakyll/hey@latest)" >&2
  exit 1
fi

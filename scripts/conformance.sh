#!/usr/bin/env bash
# Conformance runs from tools the project did not write, against the real
# binary on loopback (docs/conformance/):
#
#   scripts/conformance.sh h2spec   HTTP/2 framing, streams, flow control and
#                                   HPACK (h2spec, scripts/build-h2spec.sh),
#                                   over TLS (ALPN h2) and over H2C=true
#   scripts/conformance.sh testssl  TLS versions, suites and known
#                                   vulnerabilities (testssl.sh, Debian's
#                                   package, installed when missing)
#
# Each starts a throwaway backend and the gateway with a throwaway
# self-signed certificate, runs the tool, writes its reports into
# CONFORMANCE_OUT (default bin/conformance/, ignored by git) and stops
# everything it started, whatever happens (trap). Every address is
# 127.0.0.1; ports are chosen by the kernel (port 0) and read back from the
# processes' own logs, so a run never collides with anything listening.
#
# The exit status is non-zero when h2spec fails a case not in the list of
# known failures below (docs/conformance/h2spec.md says why each is there),
# or when testssl.sh flags something not in its list of known findings
# (docs/conformance/testssl.md), or cannot run.
#
# GATEWAY_BIN: the binary to test (default: built into bin/gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

mode=${1:-}
case "$mode" in
  h2spec | testssl) ;;
  *) echo "usage: $0 h2spec|testssl" >&2; exit 2 ;;
esac

out=${CONFORMANCE_OUT:-$repo/bin/conformance}
mkdir -p "$out"
out=$(cd "$out" && pwd)

bin=${GATEWAY_BIN:-}
if [ -z "$bin" ]; then
  echo "conformance: building the gateway into bin/gateway"
  go build -o bin/gateway ./cmd/gateway
  bin=$repo/bin/gateway
fi

# The tool, before anything starts.
case "$mode" in
  h2spec)
    h2spec=$(./scripts/build-h2spec.sh)
    ;;
  testssl)
    # Like scripts/test-deps.sh: install only when missing. Not part of
    # make test, so not in test-deps either.
    if ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
      if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
      echo "conformance: installing testssl.sh"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq testssl.sh >/dev/null
    fi
    # Debian installs it as `testssl`; upstream's name is testssl.sh.
    testssl=$(command -v testssl.sh || command -v testssl)
    ;;
esac

dir=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-conformance.XXXXXX")
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# log_value NAME FILE PATTERN: wait (up to 15 s) for a line of FILE that
# PATTERN (sed -n with p) prints something for, and print that.
log_value() {
  local v
  for _ in $(seq 1 150); do
    v=$(sed -n "$3" "$2" 2>/dev/null | head -n 1)
    if [ -n "$v" ]; then echo "$v"; return 0; fi
    sleep 0.1
  done
  echo "conformance: $1 did not start; its log:" >&2
  tail -n 20 "$2" >&2 || true
  exit 1
}

# A backend that answers every method with 200 and a short body, after
# reading the request body: h2spec's flow-control cases need an answer with
# DATA frames, and with a route to nothing every request would be a 502
# from the gateway itself instead of a proxied answer.
cat >"$dir/backend.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b"conformance backend: " + self.command.encode() + b" " + self.path.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET
    def log_message(self, *a): pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
print("backend port", srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 -u "$dir/backend.py" >"$dir/backend.log" 2>&1 &
pids+=($!)
backend_port=$(log_value backend "$dir/backend.log" 's/^backend port \([0-9]*\)$/\1/p')

# A throwaway certificate for localhost (P-256, like most real ones now),
# valid 90 days as a public CA's would be, so testssl.sh does not flag an
# imminent expiry that only a throwaway certificate has.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null

# start_gateway NAME VAR=VALUE...: the gateway with a catch-all route to the
# backend and the given settings, from $dir (so no .env of the checkout is
# read); sets gw_addr to its public address and gw_pid. Not called inside
# $(...): a subshell would keep the pid from the cleanup. Everything else is
# the defaults, rate limits included (docs/conformance/h2spec.md says which
# answers they account for); SHUTDOWN_TIMEOUT only makes the stop quick.
start_gateway() {
  local name=$1; shift
  (
    cd "$dir"
    exec env GATEWAY_PORT=127.0.0.1:0 OPS_ADDR=127.0.0.1:0 DASHBOARD=off LOG_LEVEL=debug SHUTDOWN_TIMEOUT=5s \
      SERVICE_ROUTES="[{\"prefix\":\"/\",\"target_url\":\"http://127.0.0.1:$backend_port\"}]" \
      "$@" "$bin"
  ) >"$out/gateway-$name.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  gw_addr=$(log_value "gateway ($name)" "$out/gateway-$name.log" \
    '/"msg":"gateway listening"/s/.*"addr":"\([^"]*\)".*/\1/p')
}

# stop_gateway: SIGTERM the last gateway started and wait for it to exit.
stop_gateway() {
  kill -TERM "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
}

# run_bg CMD...: run a tool in the background and wait for it. bash runs a
# trap only once the foreground command has finished; `wait` is interrupted
# at once, so Ctrl-C or SIGTERM stops the run (the tool included) without
# waiting for the tool to end by itself.
run_bg() {
  "$@" &
  local pid=$!
  pids+=("$pid")
  wait "$pid"
}

# The h2spec cases known to fail, each explained in
# docs/conformance/h2spec.md (ids as h2spec takes them on its command line:
# `h2spec http2/4.2/3`). A failure not listed fails the run; a listed one
# is reported, not fatal.
h2spec_known=(
  http2/4.2/3     # net/http advertises SETTINGS_MAX_FRAME_SIZE 1 MiB; h2spec assumes 16 KiB
  http2/6.5.3/1   # net/http hangs up on a SETTINGS frame with duplicate entries
  http2/8.1.2.2/1 # net/http answers 400 to a connection-specific header, not RST_STREAM
  http2/8.1.2.2/2 # the same for "TE" other than "trailers"
)
h2spec_known_h2c=(
  http2/3.5/2     # a port that speaks HTTP/1.1 too answers a bad preface with an HTTP/1.1 400
)

# h2spec_check XML KNOWN...: list the failing cases of a JUnit report, each
# marked known or NEW; fails when there is a new one. The report names
# cases by position within their section, as h2spec's ids do.
h2spec_check() {
  python3 - "$@" <<'PY'
import sys, xml.etree.ElementTree as ET
report, known = sys.argv[1], set(sys.argv[2:])
new = 0
for suite in ET.parse(report).getroot():
    for i, case in enumerate(suite.findall("testcase"), 1):
        if case.find("failure") is None and case.find("error") is None:
            continue
        cid = f"{suite.get('package')}/{i}"
        mark = "known" if cid in known else "NEW"
        new += cid not in known
        print(f"  {mark:5} {cid}: {suite.get('name')}: {case.get('classname')}")
sys.exit(1 if new else 0)
PY
}

status=0
case "$mode" in
  h2spec)
    "$h2spec" --version | tee "$out/h2spec-version.txt"
    # Over TLS: h2 by ALPN, the certificate unverified (-k).
    start_gateway h2spec-tls TLS_CERT_FILE="$dir/tls.crt" TLS_KEY_FILE="$dir/tls.key"
    echo "conformance: h2spec over TLS against $gw_addr"
    run_bg "$h2spec" -h 127.0.0.1 -p "${gw_addr##*:}" -t -k -j "$out/h2spec-tls.xml" \
      >"$out/h2spec-tls.txt" 2>&1 || true
    stop_gateway
    tail -n 1 "$out/h2spec-tls.txt"
    h2spec_check "$out/h2spec-tls.xml" "${h2spec_known[@]}" || status=1
    # Cleartext HTTP/2 with prior knowledge (H2C=true, no TLS).
    start_gateway h2spec-h2c H2C=true
    echo "conformance: h2spec over h2c against $gw_addr"
    run_bg "$h2spec" -h 127.0.0.1 -p "${gw_addr##*:}" -j "$out/h2spec-h2c.xml" \
      >"$out/h2spec-h2c.txt" 2>&1 || true
    stop_gateway
    tail -n 1 "$out/h2spec-h2c.txt"
    h2spec_check "$out/h2spec-h2c.xml" "${h2spec_known[@]}" "${h2spec_known_h2c[@]}" || status=1
    ;;
  testssl)
    # Its version and the OpenSSL it drives, without the banner's escapes.
    "$testssl" --version 2>&1 | sed 's/\x1b\[[0-9;]*m//g' |
      grep -E '^ *testssl |Using "OpenSSL' | sed 's/^ *//' | tee "$out/testssl-version.txt" || true
    start_gateway testssl TLS_CERT_FILE="$dir/tls.crt" TLS_KEY_FILE="$dir/tls.key"
    echo "conformance: testssl.sh against $gw_addr"
    rm -f "$out/testssl.json" "$out/testssl.txt"
    # The default run (protocols, cipher categories, forward secrecy, server
    # defaults and certificate, HTTP headers, vulnerabilities, every cipher,
    # client simulation): about 75 s. --warnings batch: never stop to ask;
    # --nodns none: nothing is looked up (the target is an address, and the
    # throwaway certificate names no CRL or OCSP responder to fetch).
    run_bg "$testssl" --quiet --color 0 --warnings batch --nodns none \
      --jsonfile "$out/testssl.json" --logfile "$out/testssl.txt" "$gw_addr" >/dev/null 2>&1 || rc=$?
    stop_gateway
    if [ "${rc:-0}" -ne 0 ] || [ ! -s "$out/testssl.json" ]; then
      echo "conformance: testssl.sh failed (exit ${rc:-0}); its log:" >&2
      tail -n 20 "$out/testssl.txt" >&2 || true
      exit 1
    fi
    # What it flagged (LOW and above, and its own WARN/FATAL), each marked
    # known (docs/conformance/testssl.md says why) or NEW; a new one fails.
    python3 - "$out/testssl.json" <<'PY' | tee "$out/testssl-summary.txt" || status=1
import json, sys
known = {
    "cert_chain_of_trust",  # the throwaway certificate is self-signed
    "cert_revocation",      # ... and names no CRL or OCSP responder
    "TLS_session_ticket",   # crypto/tls: 7-day ticket lifetime, keys rotated daily
}
found = json.load(open(sys.argv[1]))
flagged = [f for f in found if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")]
print(f"testssl.sh: {len(found)} findings, {len(flagged)} flagged")
new = 0
for f in flagged:
    mark = "known" if f["id"] in known else "NEW"
    new += f["id"] not in known
    print(f"  {mark:5} {f['severity']:8} {f['id']}: {f['finding']}")
sys.exit(1 if new else 0)
PY
    ;;
esac
echo "conformance: reports in $out"
exit "$status"

#!/usr/bin/env bash
# make stack: the docker-compose stack without Docker, from local binaries on
# loopback — nginx edge (TLS, self-signed) → gateway → two echo upstreams,
# with Redis, Prometheus and (when built) Jaeger. Prints the URLs; Ctrl-C
# stops everything and removes the temporary directory.
#
# Needs: go (or GATEWAY_BIN), redis-server, nginx, prometheus, openssl,
# python3 (the echo upstreams). Jaeger comes from scripts/build-jaeger.sh's
# cache when present. Grafana is not started (no local binary): import
# deploy/grafana/dashboards/portcullis.json into yours, or use docker-compose.
#
# The gateway's ops listener (OPS_ADDR: /metrics, /stats, /monitor, the
# admin API, the detailed /health) is on loopback like everything here;
# Prometheus scrapes it, nginx never proxies to it.
#
# Ports (override any): STACK_HTTPS_PORT=8443 STACK_HTTP_PORT=8080
# STACK_GATEWAY_PORT=9777 STACK_OPS_PORT=9778 STACK_REDIS_PORT=6380 STACK_PROMETHEUS_PORT=9090
# STACK_JAEGER_UI_PORT=16686 STACK_OTLP_PORT=4318 STACK_ECHO_PORTS="8081 8082"
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

https_port=${STACK_HTTPS_PORT:-8443}
http_port=${STACK_HTTP_PORT:-8080}
gw_port=${STACK_GATEWAY_PORT:-9777}
ops_port=${STACK_OPS_PORT:-9778}
redis_port=${STACK_REDIS_PORT:-6380}
prom_port=${STACK_PROMETHEUS_PORT:-9090}
jaeger_ui_port=${STACK_JAEGER_UI_PORT:-16686}
otlp_port=${STACK_OTLP_PORT:-4318}
read -r -a echo_ports <<<"${STACK_ECHO_PORTS:-8081 8082}"
jaeger_bin="${PORTCULLIS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/jaeger-v1.76.0/jaeger"

for tool in redis-server nginx prometheus openssl python3; do
  command -v "$tool" >/dev/null || { echo "stack: $tool not found (Debian: apt-get install redis-server nginx prometheus openssl python3)" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-stack.XXXXXX")
chmod 755 "$dir" # nginx workers may run as another user
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stack: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
  echo "stack: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name, command...: run in the background, logs in $dir/<name>.log
  local name=$1; shift
  "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
}

wait_port() { # name, port
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "stack: $1 did not open port $2; its log:" >&2
  tail -n 20 "$dir/$1.log" >&2 || true
  exit 1
}

# The gateway binary.
bin=${GATEWAY_BIN:-}
if [ -z "$bin" ]; then
  echo "stack: building the gateway"
  CGO_ENABLED=0 go build -trimpath -o "$dir/gateway" ./cmd/gateway
  bin="$dir/gateway"
fi

# Development settings, as docker-compose.yml uses them.
cp .env.development "$dir/.env"
redis_password=$(sed -n 's/^REDIS_PASSWORD=//p' .env.development)

# Redis, with the development password in a config file (private to this
# user), not on its command line where `ps` shows it.
(umask 077 && printf 'requirepass %s\n' "$redis_password" >"$dir/redis.conf")
start redis redis-server "$dir/redis.conf" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$dir"
wait_port redis "$redis_port"

# Two echo upstreams (they answer with the headers they received).
cat >"$dir/echo.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"upstream": sys.argv[1], "path": self.path,
                           "headers": dict(self.headers)}, indent=2).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_PUT = do_DELETE = do_GET
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
targets=()
for p in "${echo_ports[@]}"; do
  start "echo-$p" python3 "$dir/echo.py" "$p"
  targets+=("http://127.0.0.1:$p")
done
for p in "${echo_ports[@]}"; do wait_port "echo-$p" "$p"; done

# Jaeger (OTLP/HTTP in, UI out), when scripts/build-jaeger.sh has built it.
otel_endpoint=
if [ -x "$jaeger_bin" ]; then
  cat >"$dir/jaeger.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:$jaeger_ui_port
    grpc:
      endpoint: 127.0.0.1:0
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$otlp_port
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
YAML
  start jaeger "$jaeger_bin" --config "file:$dir/jaeger.yaml"
  wait_port jaeger "$otlp_port"
  otel_endpoint="http://127.0.0.1:$otlp_port"
fi

# The gateway: .env.development plus the stack's addresses. nginx connects
# from 127.0.0.1, so that (and only that) is its trusted proxy: the gateway
# trusts nobody by default and would otherwise see every client as nginx.
routes=$(IFS=,; echo "[{\"prefix\":\"/api/echo\",\"target_url\":\"${targets[*]}\"},{\"prefix\":\"/api/private\",\"target_url\":\"${targets[0]}\",\"require_auth\":true}]")
(
  cd "$dir"
  export GATEWAY_PORT="127.0.0.1:$gw_port" OPS_ADDR="127.0.0.1:$ops_port" \
    REDIS_ADDR="127.0.0.1:$redis_port" CACHE_BACKEND=redis \
    TRUSTED_PROXIES=127.0.0.1/32 DASHBOARD=off SERVICE_ROUTES="$routes" HEALTH_CHECK_INTERVAL=5s
  [ -n "$otel_endpoint" ] && export OTEL_EXPORTER_OTLP_ENDPOINT="$otel_endpoint"
  exec "$bin"
) >"$dir/gateway.log" 2>&1 &
pids+=($!)
wait_port gateway "$gw_port"
wait_port gateway "$ops_port"

# nginx: the shipped config with loopback ports, this stack's certificate
# and paths (the same substitutions e2e/deploy_nginx_test.go makes).
mkdir -p "$dir/nginx/tmp" "$dir/nginx/logs" "$dir/nginx/conf"
chmod -R 777 "$dir/nginx/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/nginx/conf/tls.key" -out "$dir/nginx/conf/tls.crt" 2>/dev/null
cp /etc/nginx/mime.types "$dir/nginx/conf/" 2>/dev/null || : >"$dir/nginx/conf/mime.types"
cp -r deploy/nginx/html "$dir/nginx/html" && chmod -R a+rX "$dir/nginx/html"
sed -e "s|listen 80;|listen 127.0.0.1:$http_port;|" \
    -e "/listen \[::\]:80;/d" \
    -e "s|listen 443 ssl http2;|listen 127.0.0.1:$https_port ssl http2;|" \
    -e "/listen \[::\]:443 ssl http2;/d" \
    -e "s|server gateway:9777;|server 127.0.0.1:$gw_port;|" \
    -e "s|/etc/nginx/certs/|$dir/nginx/conf/|" \
    -e "s|root /usr/share/nginx/html;|root $dir/nginx/html;|" \
    -e "s|pid /var/run/nginx.pid;|pid $dir/nginx/nginx.pid;|" \
    -e "s|/var/log/nginx/|$dir/nginx/logs/|" \
    -e "s|^http {|http {\n    client_body_temp_path $dir/nginx/tmp/body;\n    proxy_temp_path $dir/nginx/tmp/proxy;\n    fastcgi_temp_path $dir/nginx/tmp/fastcgi;\n    uwsgi_temp_path $dir/nginx/tmp/uwsgi;\n    scgi_temp_path $dir/nginx/tmp/scgi;|" \
    deploy/nginx/nginx.conf >"$dir/nginx/conf/nginx.conf"
nginx_args=(-c "$dir/nginx/conf/nginx.conf" -p "$dir/nginx" -e "$dir/nginx/logs/error.log")
nginx "${nginx_args[@]}" -t -q
start nginx nginx "${nginx_args[@]}" -g "daemon off;"
wait_port nginx "$https_port"

# Prometheus scraping the gateway's ops listener, with the shipped alert rules.
# The substitution below must find its target, or Prometheus would scrape
# a "gateway" host that does not exist here.
grep -q "targets: \['gateway:9778'\]" deploy/prometheus/prometheus.yml ||
  { echo "stack: deploy/prometheus/prometheus.yml no longer scrapes gateway:9778; update this script" >&2; exit 1; }
mkdir -p "$dir/prometheus"
cp deploy/prometheus/alerts.yml "$dir/prometheus/"
sed -e "s|targets: \['gateway:9778'\]|targets: ['127.0.0.1:$ops_port']|" \
    -e "s|targets: \['localhost:9090'\]|targets: ['127.0.0.1:$prom_port']|" \
    deploy/prometheus/prometheus.yml >"$dir/prometheus/prometheus.yml"
start prometheus prometheus --config.file="$dir/prometheus/prometheus.yml" \
  --storage.tsdb.path="$dir/prometheus/data" --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
wait_port prometheus "$prom_port"

cat <<TXT

stack: up (logs in $dir)
  nginx edge     https://localhost:$https_port/          (self-signed; curl -k)
                 https://localhost:$https_port/api/echo/ → echo upstreams ${echo_ports[*]}
  gateway        http://127.0.0.1:$gw_port/health            (public listener: the status only)
  gateway ops    http://127.0.0.1:$ops_port/health   /metrics   /stats   /monitor   /admin/*
  prometheus     http://127.0.0.1:$prom_port/
  redis          127.0.0.1:$redis_port (password from .env.development)
TXT
if [ -n "$otel_endpoint" ]; then
  echo "  jaeger         http://127.0.0.1:$jaeger_ui_port/   (OTLP $otel_endpoint)"
else
  echo "  jaeger         not started (scripts/build-jaeger.sh builds it)"
fi
echo "  grafana        not started: import deploy/grafana/dashboards/portcullis.json"
echo "stack: Ctrl-C stops everything"

# Run until Ctrl-C, or until any process dies (then stop the rest).
set +e
wait -n "${pids[@]}"
echo "stack: a process exited; stopping the rest" >&2
for f in "$dir"/*.log "$dir"/nginx/logs/error.log; do
  [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
done
exit 1

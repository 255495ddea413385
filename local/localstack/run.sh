#!/usr/bin/env bash
# Run a command against LocalStack (S3, SQS, Secrets Manager) started on 127.0.0.1 only, on a free
# port, from its own Python 3.13 virtual environment; LocalStack is stopped when the command ends,
# whether it passed or not. The command sees REWRAP_TEST_S3_ENDPOINT=http://127.0.0.1:<port>.
#
#   local/localstack/run.sh VENV COMMAND [ARG...]
set -euo pipefail

venv="$1"; shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="$(mktemp -d "${TMPDIR:-/tmp}/rewrap-localstack.XXXXXX")"
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$state/localstack.log"

# Loopback only: the hypercorn gateway honours GATEWAY_LISTEN (the default server binds 0.0.0.0).
# No DNS server, no certificate download, no telemetry; state kept in a throwaway directory.
export GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port"
export SERVICES=s3,sqs,secretsmanager,kms SQS_ENDPOINT_STRATEGY=path
export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$state/fs" DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1
export DISABLE_EVENTS=1 LOCALSTACK_TELEMETRY_DISABLED=1 DISABLE_CORS_CHECKS=1 PERSISTENCE=0
mkdir -p "$state/fs"

"$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 &
pid=$!

stop() {
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$state"
}
trap stop EXIT INT TERM

url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 1 240); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "LocalStack exited during startup; its log:" >&2; tail -n 40 "$log" >&2; exit 1
    fi
    if "$venv/bin/python" - "$url" <<'PY' 2>/dev/null; then ready=1; break; fi
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1] + "/_localstack/health", timeout=2))
services = health.get("services", {})
sys.exit(0 if all(services.get(s) in ("running", "available") for s in ("s3", "sqs", "secretsmanager")) else 1)
PY
    sleep 0.5
done
[ -n "$ready" ] || { echo "LocalStack did not become healthy in 120 s; its log:" >&2; tail -n 40 "$log" >&2; exit 1; }
echo "LocalStack $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))') on $url (pid $pid)"

REWRAP_TEST_S3_ENDPOINT="$url" "$@"

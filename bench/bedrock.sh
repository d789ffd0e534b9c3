#!/usr/bin/env bash
# The Bedrock translated path under load: cloudmux (type bedrock, SigV4 signing, Converse
# translation, event-stream decoding) in front of an nginx stub that answers Converse JSON
# and ConverseStream event streams (bench/bedrock/stub-bodies.mjs, same text as the plain
# stub), against nginx's reverse proxy in front of the plain OpenAI stub, with the
# bench/peers harness (wrk, pinned cores). Prints the req/s ratio (goal >= 0.7x), the
# streaming latencies, and the CPU per streamed chunk of the translation (bench/bedrock/cpu.c).
#   bench/bedrock.sh [--quick]          (REPEAT=3 for numbers you quote; the machine must be quiet)
#   bench/bedrock.sh --cpu-only         (just the per-chunk CPU probe: no nginx, no wrk)
#   CLOUDMUX_BENCH_LEDGER=sqlite:///tmp/l.db bench/bedrock.sh   (with the ledger on)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export BENCH_WORK=${BENCH_WORK:-$ROOT/bench/.work}
W=$BENCH_WORK/bedrock
mkdir -p "$W/tmp"
BR_PORT=${BEDROCK_STUB_PORT:-18011}
CMX_PORT=${CLOUDMUX_BENCH_PORT:-18901}
CMX_BIN=${CLOUDMUX_BIN:-$ROOT/build/cloudmux}
[[ -x $CMX_BIN ]] || make build >/dev/null || exit 1
node bench/bedrock/stub-bodies.mjs "$W" || exit 1

cpu_probe() {
    cc -O2 -I src bench/bedrock/cpu.c build/libcmx.a \
        $(pkg-config --libs libuv libcurl json-c libfyaml openssl) -lhttp_parser -lpthread -lm \
        -o "$W/cpu" || return 1
    echo "== CPU per streamed chunk (decode + translate + chunk filter + SSE framing, no I/O)"
    taskset -c "${GW_CPU:-1}" "$W/cpu" "$W/stream.bin" 20000
    echo "-- baseline: the OpenAI pass-through decoder on the plain stub's stream"
    taskset -c "${GW_CPU:-1}" "$W/cpu" bench/peers/fixtures/stream.sse 20000 openai
}
if [[ ${1:-} == --cpu-only ]]; then
    cpu_probe
    exit $?
fi

# the Converse answer from memory, as the plain stub sends its chat.completion (one write)
conv=$(node bench/peers/tools/nginx-literal.js br_json "$W/converse.json") || exit 1
conv_maps=$(grep -v '^VARS ' <<<"$conv")
conv_vars=$(sed -n 's/^VARS //p' <<<"$conv")
cat >"$W/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_max_body_size 8m;
    client_body_buffer_size 64k;
    client_body_temp_path $W/tmp;
    proxy_temp_path $W/tmp;
    fastcgi_temp_path $W/tmp;
    uwsgi_temp_path $W/tmp;
    scgi_temp_path $W/tmp;
    map_hash_bucket_size 128;
$conv_maps
    server {
        listen 127.0.0.1:$BR_PORT backlog=4096;
        root $W;
        # the event stream is binary: a static file (POST -> 405 -> internal GET of the file)
        location ~ /converse-stream\$ { error_page 405 =200 /stream.bin; return 405; }
        location ~ /converse\$ { default_type application/json; return 200 '$conv_vars'; }
        location = /stream.bin { types { } default_type application/vnd.amazon.eventstream; }
    }
}
NGINX
# The translation is what is measured here: the ledger is off unless CLOUDMUX_BENCH_LEDGER
# names one (e.g. sqlite://$W/ledger.db); bench/ledger.sh measures the ledger's own cost.
cat >"$W/cloudmux.yaml" <<YAML
listen: 127.0.0.1:$CMX_PORT
workers: ${CLOUDMUX_BENCH_WORKERS:-1}
server: { access_log: ${CLOUDMUX_BENCH_ACCESS_LOG:-true} }
ledger: ${CLOUDMUX_BENCH_LEDGER:-off}
providers:
  - name: bedrock-stub
    type: bedrock
    cloud: aws
    region: us-east-1
    access_key_id: AKIABENCHEXAMPLE
    secret_access_key: bench/secret/not-checked-by-the-stub
    session_token: bench-session-token
    endpoint: http://127.0.0.1:$BR_PORT
models:
  - name: gpt-4o-mini
    deployments:
      - provider: bedrock-stub
        model: anthropic.claude-3-haiku-20240307-v1:0
YAML

setsid taskset -c "${STUB_CPU:-0}" nginx -p "$W" -c "$W/nginx.conf" -e "$W/error.log" &
stub=$!
trap 'kill -- -$stub 2>/dev/null; kill $stub 2>/dev/null' EXIT
for _ in $(seq 50); do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$BR_PORT/model/x/converse" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -X POST -d '{}' "http://127.0.0.1:$BR_PORT/model/x/converse" | grep -q stopReason ||
    { echo "bedrock stub did not answer"; exit 1; }

PHASES=${PHASES:-load stream} bench/peers/run.sh "$@" nginx-proxy \
    --gateway cloudmux-bedrock --url "http://127.0.0.1:$CMX_PORT/v1/chat/completions" \
    --desc "cloudmux, 1 worker, bedrock provider (SigV4, Converse, event stream) -> nginx Bedrock stub" \
    --start "exec '$CMX_BIN' serve --config '$W/cloudmux.yaml'" || exit $?
last=$(ls -td "$BENCH_WORK"/.run/*/ | head -1)
node bench/bedrock/ratios.mjs "$last" cloudmux-bedrock
cpu_probe

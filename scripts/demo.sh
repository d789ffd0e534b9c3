#!/usr/bin/env bash
# `make run`: starts the provider simulators (tests/sim/demo.mjs) and the gateway on
# examples/demo.yaml in the foreground. Ctrl-C stops both.
set -uo pipefail
cd "$(dirname "$0")/.."
node tests/sim/demo.mjs &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/18083) 2>/dev/null && break
    sleep 0.1
done
cat <<'TXT'

cloudmux demo: gateway on http://127.0.0.1:8080 in front of local simulators
(OpenAI on :18081, Azure OpenAI on :18082, an OpenAI-compatible server on :18083).
Try, in another terminal:

  curl -s http://127.0.0.1:8080/v1/chat/completions \
       -H 'content-type: application/json' \
       -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello!"}]}'

  curl -sN http://127.0.0.1:8080/v1/chat/completions \
       -H 'content-type: application/json' \
       -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Stream please"}]}'

  curl -s http://127.0.0.1:8080/v1/models

The access log (one JSON line per request) follows. Ctrl-C stops everything.

TXT
build/cloudmux serve --config examples/demo.yaml

#!/usr/bin/env bash
# The cost of virtual keys, tenants, rate limits and budgets on the request path: plain
# cloudmux (open mode) vs cloudmux-keys (a key per request, tenant rpm/tpm and budgets,
# limits: memory) vs cloudmux-keys-redis (the same with limits: redis://, a redis-server on
# the gateway's core), with nginx-proxy for reference, in one bench/peers run.
#   bench/keys.sh [--quick]        (REPEAT=3 for figures you quote)
set -uo pipefail
cd "$(dirname "$0")/.."
export BENCH_WORK=${BENCH_WORK:-$PWD/bench/.work}
mkdir -p "$BENCH_WORK"
PHASES=${PHASES:-load} bench/peers/run.sh "$@" nginx-proxy cloudmux cloudmux-keys cloudmux-keys-redis || exit $?
last=$(ls -td "$BENCH_WORK"/.run/*/ | head -1)
node bench/ratios.mjs "$last"

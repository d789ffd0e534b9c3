#!/usr/bin/env bash
# cloudmux vs nginx's reverse proxy vs direct, on the same nginx stub, in one run, with
# the harness in bench/peers (wrk + Lua POST script, cores pinned: wrk and the stub on CPU
# 0, the gateway on CPU 1). Prints the harness's table, then the ratios that matter:
#   req/s at 32 connections / nginx-proxy's, added p50 latency at 1 connection over
#   direct, and peak RSS.
#   bench/run.sh [--quick] [extra targets...]      (REPEAT=3 for numbers you quote)
set -uo pipefail
cd "$(dirname "$0")/.."
export BENCH_WORK=${BENCH_WORK:-$PWD/bench/.work}
mkdir -p "$BENCH_WORK"
bench/peers/run.sh "$@" nginx-proxy cloudmux || exit $?
last=$(ls -td "$BENCH_WORK"/.run/*/ | head -1)
node bench/ratios.mjs "$last"

#!/usr/bin/env bash
# cloudmux vs nginx's reverse proxy vs direct, on the same nginx stub, in one run, with
# the harness in bench/peers (wrk + Lua POST script, cores pinned: wrk and the stub on CPU
# 0, the gateway on CPU 1). Prints the harness's table, then the ratios that matter:
#   req/s at 32 connections / nginx-proxy's, added p50 latency at 1 connection over
#   direct, and peak RSS. Targets: cloudmux (its embedded defaults: access log and the
#   SQLite ledger on), cloudmux-noledger (the proxy alone: `ledger: off`) and cloudmux-routed.
#   bench/run.sh [--quick] [extra targets...]      (REPEAT=3 for numbers you quote)
#   bench/run.sh --translated [--quick]            also the translated paths: cloudmux-anthropic
#       and cloudmux-vertex (OpenAI in, Anthropic / Gemini out, each against its own nginx stub
#       with fixed answers); phases load and stream (the paced stub speaks OpenAI only).
set -uo pipefail
cd "$(dirname "$0")/.."
export BENCH_WORK=${BENCH_WORK:-$PWD/bench/.work}
mkdir -p "$BENCH_WORK"
targets=(nginx-proxy cloudmux cloudmux-noledger cloudmux-routed)
args=()
for a in "$@"; do
    if [[ $a == --translated ]]; then
        targets+=(cloudmux-anthropic cloudmux-vertex)
        export PHASES=${PHASES:-load stream}
    else
        args+=("$a")
    fi
done
bench/peers/run.sh "${args[@]}" "${targets[@]}" || exit $?
last=$(ls -td "$BENCH_WORK"/.run/*/ | head -1)
node bench/ratios.mjs "$last"
# The routing decision alone (strategy + agreements filter), on one core, as a share of the
# gateway CPU per request (about 25 us on the 2-vCPU machines here).
[[ -x build/bench_route ]] && build/bench_route examples/partnership.yaml gpt-5 && build/bench_route examples/partnership.yaml gpt-6
exit 0

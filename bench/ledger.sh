#!/usr/bin/env bash
# The ledger's cost, two ways:
#  1. gateway throughput with the ledger on vs off: the same cloudmux (1 worker, price and a
#     capped revenue share) behind the bench/peers harness (wrk, cores pinned, noise checks),
#     ledger on (SQLite, batched) vs `ledger: off`; prints req/s and the on/off ratio per
#     connection count (target: >= 0.95).
#  2. the writer alone: records/s into SQLite (build/cmx_bench_ledger; target >= 100k/s).
#   bench/ledger.sh [--quick]            writer only: WRITER_ONLY=1 bench/ledger.sh
set -uo pipefail
cd "$(dirname "$0")/.."
N=${LEDGER_N:-500000}
PRODUCERS=${LEDGER_PRODUCERS:-1}
if [[ ! -x build/cmx_bench_ledger ]]; then
    cmake -S . -B build >/dev/null && cmake --build build -j2 --target cmx_bench_ledger cloudmux >/dev/null || exit 1
fi
echo "== writer: $N records into SQLite"
build/cmx_bench_ledger "$N" "$PRODUCERS" batched || exit 1
build/cmx_bench_ledger "$N" "$PRODUCERS" batched 0 || exit 1
build/cmx_bench_ledger "$((N / 50))" "$PRODUCERS" per_request || exit 1
[[ ${WRITER_ONLY:-0} == 1 ]] && exit 0

echo "== gateway: ledger off vs on (bench/peers, load phase)"
export BENCH_WORK=${BENCH_WORK:-$PWD/bench/.work}
mkdir -p "$BENCH_WORK"
PHASES=${PHASES:-load} NO_BASELINE=1 bench/peers/run.sh "$@" cloudmux-noledger cloudmux-ledger || exit $?
last=$(ls -td "$BENCH_WORK"/.run/*/ | head -1)
node -e '
const fs = require("fs");
const rows = fs.readFileSync(process.argv[1] + "/load.tsv", "utf8").trim().split("\n");
const head = rows.shift().split("\t");
const load = rows.map((r) => Object.fromEntries(r.split("\t").map((v, i) => [head[i], v])));
for (const c of [...new Set(load.map((r) => r.conns))]) {
  const on = load.find((r) => r.target === "cloudmux-ledger" && r.conns === c);
  const off = load.find((r) => r.target === "cloudmux-noledger" && r.conns === c);
  if (!on || !off) continue;
  console.log(`conns ${c}: ledger off ${(+off.rps).toFixed(0)} req/s, on ${(+on.rps).toFixed(0)} req/s, ratio ${(on.rps / off.rps).toFixed(3)}`);
}' "$last"

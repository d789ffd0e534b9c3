#!/usr/bin/env bash
# Runs every libFuzzer target in build dir $1 for $2 seconds each, seeded from
# fuzz/corpus/<name> (copied, so the committed corpus is not modified) with the
# dictionaries in fuzz/. Exits non-zero on the first crash, leak or trap, after printing
# the failing input (od -c and base64: CI keeps only its log) and copying it to fuzz/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECS=${2:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for bin in "$BUILD"/fuzz_*; do
    [[ -x $bin ]] || continue
    name=$(basename "$bin")
    short=${name#fuzz_}
    mkdir -p "$work/$short"
    [[ -d fuzz/corpus/$short ]] && cp -r "fuzz/corpus/$short/." "$work/$short/"
    dict=()
    [[ -f fuzz/$short.dict ]] && dict=(-dict="fuzz/$short.dict")
    [[ $short == json_scan && -f fuzz/json.dict ]] && dict=(-dict=fuzz/json.dict)
    echo "== $name (${SECS}s)"
    if ! "$bin" -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$work/" \
        "${dict[@]}" "$work/$short" 2>"$work/$name.log"; then
        tail -40 "$work/$name.log"
        echo "FUZZ FAILURE: $name (artifacts: $(ls "$work" | grep -E '^(crash|leak|timeout|oom)-' | tr '\n' ' '))"
        # the input that failed, in the log (CI keeps nothing else) and under fuzz/artifacts/
        mkdir -p fuzz/artifacts
        for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
            [[ -f $a ]] || continue
            cp "$a" "fuzz/artifacts/$name-$(basename "$a")"
            echo "== $(basename "$a") ($(wc -c <"$a") bytes; reproduce: $bin fuzz/artifacts/$name-$(basename "$a"))"
            head -c 4096 "$a" | od -An -c | head -80
            echo "base64: $(head -c 4096 "$a" | base64 -w0)"
        done
        status=1
        break
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$name.log" | tr '\n' ' '
    echo
done
exit $status

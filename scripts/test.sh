#!/usr/bin/env bash
# Runs every test against the build in $1 (default: build): the cmocka unit tests through
# ctest, then the end-to-end tests (Node's test runner, official openai client, provider
# simulators). Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export CLOUDMUX_BIN=$PWD/$BUILD/cloudmux
# sanitizer builds: fail loudly, report leaks, and keep reports for the e2e harness to see
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}

echo "== unit tests ($BUILD)"
(cd "$BUILD" && ctest --output-on-failure)
unit=$?

echo "== end-to-end tests ($BUILD/cloudmux)"
node --test --test-concurrency=1 --test-timeout=120000 tests/e2e/*.test.mjs tests/sim/*.test.mjs
e2e=$?

if ((unit != 0 || e2e != 0)); then
    echo "FAILED: unit=$unit e2e=$e2e"
    exit 1
fi
echo "all tests passed ($BUILD)"

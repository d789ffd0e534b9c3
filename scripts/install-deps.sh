#!/usr/bin/env bash
# Installs what cloudmux needs to build, run and test on Debian 12, only when missing:
# Debian packages with apt-get (as root) and the test clients with `npm ci`.
#   scripts/install-deps.sh [build|run|test|bench|fuzz]...
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libcurl4-openssl-dev
            libjson-c-dev libfyaml-dev libssl-dev libcmocka-dev libsqlite3-dev libpq-dev
            libhiredis-dev) # libhiredis-dev: limits: redis://
run_pkgs=(nodejs npm)
test_pkgs=(nodejs npm clang libclang-rt-14-dev prometheus postgresql sqlite3
           redis-server) # redis-server: the limits tests start their own
bench_pkgs=(nginx-light wrk linux-perf)
fuzz_pkgs=(clang libclang-rt-14-dev)

want=()
for what in "${@:-build}"; do
    case $what in
    build) want+=("${build_pkgs[@]}") ;;
    run) want+=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
    test) want+=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    bench) want+=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
    fuzz) want+=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
    *) echo "install-deps: unknown set '$what'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    # node/npm may come from elsewhere than Debian (e.g. NodeSource): a working binary is enough
    case $p in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: need root to apt-get install: ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for what in "${@:-build}"; do
    if [[ $what == test || $what == run ]]; then
        if [[ ! -d node_modules/openai || package-lock.json -nt node_modules/.package-lock.json ]]; then
            echo "install-deps: npm ci"
            npm ci --no-audit --no-fund --loglevel=error
        fi
    fi
done

#!/usr/bin/env bash
# The `mlnc verify` case of docs/performance.md (K = 200, d = 256, n = 1:10,2:1, lambdas 1e-4;
# N = 21 900, double): wall time and peak resident memory of the whole process (/usr/bin/time),
# iterations, training time and verdict, for this build's program at each seed, the training
# time with the history metrics off (--every 100000, to size their cost), and the same case run
# by the program of a reference commit (default 517fa28, the state before the CPU engine), built
# from its own tree in a temporary git worktree with its own defaults, on the same machine in
# the same run. The reference takes about 5 minutes of one core to run, plus its build.
#
#   bash bench/verify_case.sh BUILD_DIR/bin/mlnc [SEEDS] [REF]
#
# SEEDS: space-separated, default "1" (the program's default seed); REF: a commit, or "none".
set -euo pipefail

mlnc=${1:?usage: verify_case.sh MLNC_PROGRAM [SEEDS] [REF]}
seeds=${2:-1}
ref=${3:-517fa28}
root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mlnc_verify_case.XXXXXX")
cleanup() {
    if [ -d "$tmp/ref" ]; then git -C "$root" worktree remove --force "$tmp/ref" > /dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

case_args=(--K 200 --d 256 --n 1:10,2:1 --lambda-w 1e-4 --lambda-h 1e-4 --lambda-b 1e-4)

# run LABEL PROGRAM [EXTRA ARGS...]: one table row.
run() {
    local label=$1 program=$2
    shift 2
    rm -rf "$tmp/out"
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$program" verify "${case_args[@]}" "$@" --out "$tmp/out" \
        > "$tmp/log" 2>&1 || true
    local wall rss
    read -r wall rss < <(tail -n 1 "$tmp/time")
    local iterations verdict
    iterations=$(grep -o "iterations [0-9]* ([a-z_]*), [0-9.e+-]* s" "$tmp/log" | head -n 1 || true)
    verdict=$(grep -o "verdict: [A-Z]*[^(]*([^)]*)" "$tmp/log" | head -n 1 || true)
    echo "| $label | $wall | $((rss / 1024)) | ${iterations:-?} | ${verdict:-no verdict} |"
    last_wall=$wall
}

echo "| run | wall (s) | peak RSS (MB) | iterations, training time | verdict |"
echo "|---|---|---|---|---|"
first_wall=""
for s in $seeds; do
    run "this build, seed $s" "$mlnc" --seed "$s"
    [ -n "$first_wall" ] || first_wall=$last_wall
done
first_seed=${seeds%% *}
run "this build, seed $first_seed, --every 100000 (no history metrics)" "$mlnc" --seed "$first_seed" --every 100000

if [ "$ref" != none ]; then
    git -C "$root" worktree add --detach "$tmp/ref" "$ref" > /dev/null 2>&1
    cmake -S "$tmp/ref" -B "$tmp/ref/build" -DCMAKE_BUILD_TYPE=Release -DMLNC_BUILD_TESTS=OFF \
        -DMLNC_BUILD_BENCH=OFF > "$tmp/ref-build.log" 2>&1
    cmake --build "$tmp/ref/build" --target mlnc_cli -j "$(nproc)" >> "$tmp/ref-build.log" 2>&1 ||
        { echo "building $ref failed: see its log"; cat "$tmp/ref-build.log"; exit 1; }
    run "$ref (its own defaults)" "$tmp/ref/build/bin/mlnc"
    awk -v a="$last_wall" -v b="$first_wall" -v r="$ref" \
        'BEGIN { printf "\nspeed-up of this build (first seed) over %s: %.1fx\n", r, a / b }'
fi
echo
echo "threads: $(nproc); $(grep -q avx512f /proc/cpuinfo && echo avx512f || (grep -q avx2 /proc/cpuinfo && echo avx2 || echo sse2)) machine"

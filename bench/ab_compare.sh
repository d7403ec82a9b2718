#!/usr/bin/env bash
# Builds of mlnc_bench against one another on a noisy machine (or one build, steadied): the
# programs run in turn, ROUNDS times over all of them (so that a change of machine load touches
# every column alike), and the table keeps each benchmark's minimum real time (ms) per program
# (STAT=median: the median of all its runs, REPS repetitions per round, to show a spread that
# the minimum hides, such as a core slowed at times).
#
#   bash bench/ab_compare.sh FILTER BENCH1 [BENCH2 ...]
#   ROUNDS=5 MIN_TIME=0.2 bash bench/ab_compare.sh 'Pal(Loss|LossGrad)<.*>/100/10000/1/' old/mlnc_bench new/mlnc_bench
#   STAT=median REPS=5 ROUNDS=4 MIN_TIME=0.05 bash bench/ab_compare.sh 'PalLossGrad<float>/10/100000/2/' old new
#
# FILTER is a --benchmark_filter regular expression. Exit status: 0, or 2 on a usage error.

set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
filter=$1
shift
ROUNDS=${ROUNDS:-5}
MIN_TIME=${MIN_TIME:-0.2}
STAT=${STAT:-min}
REPS=${REPS:-1}
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "ab_compare.sh: ROUNDS must be a positive integer, got '$ROUNDS'" >&2
    exit 2
fi
if ! [[ "$REPS" =~ ^[1-9][0-9]*$ ]]; then
    echo "ab_compare.sh: REPS must be a positive integer, got '$REPS'" >&2
    exit 2
fi
if [[ "$STAT" != min && "$STAT" != median ]]; then
    echo "ab_compare.sh: STAT must be min or median, got '$STAT'" >&2
    exit 2
fi
for b in "$@"; do
    if [[ ! -x "$b" ]]; then
        echo "ab_compare.sh: not an executable: $b" >&2
        exit 2
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for ((r = 0; r < ROUNDS; ++r)); do
    j=0
    for b in "$@"; do
        "$b" --benchmark_filter="$filter" --benchmark_min_time="$MIN_TIME" --benchmark_repetitions="$REPS" \
            --benchmark_format=csv 2>/dev/null |
            awk -F, 'NR > 1 && $1 != "" && $1 !~ /_(mean|median|stddev|cv)"?$/ {
                gsub(/"/, "", $1)
                ms = $5 == "ns" ? 1e-6 : $5 == "us" ? 1e-3 : $5 == "s" ? 1e3 : 1
                print $1, $3 * ms
            }' >>"$work/$j"
        j=$((j + 1))
    done
done

# One row per benchmark (in the first program's order), one column per program.
printf '| benchmark |'
for b in "$@"; do printf ' %s |' "$b"; done
printf '\n|---|'
for _ in "$@"; do printf -- '---:|'; done
printf '\n'
awk -v n=$# -v stat="$STAT" '
    { key = $1; t = $2 + 0 }
    FNR == 1 { file++ }
    file == 1 && !(key in seen) { order[++rows] = key; seen[key] = 1 }
    !((file, key) in best) || t < best[file, key] { best[file, key] = t }
    { c = ++count[file, key]; v[file, key, c] = t }
    function median(f, k,    c, i, j, x, a) {
        c = count[f, k]
        for (i = 1; i <= c; ++i) {  # insertion sort (no asort in mawk)
            x = v[f, k, i]
            for (j = i - 1; j >= 1 && a[j] > x; --j) a[j + 1] = a[j]
            a[j + 1] = x
        }
        return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    END {
        for (r = 1; r <= rows; ++r) {
            printf "| %s |", order[r]
            for (f = 1; f <= n; ++f) {
                if ((f, order[r]) in best) printf " %.3f |", stat == "median" ? median(f, order[r]) : best[f, order[r]]
                else printf " n/a |"
            }
            printf "\n"
        }
    }' $(for ((j = 0; j < $#; ++j)); do echo "$work/$j"; done)

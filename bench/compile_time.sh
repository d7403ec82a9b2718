#!/usr/bin/env bash
# The compile-time budget, measured in one run against a checkout of commit 517fa28 (the reference).
#
#   bash bench/compile_time.sh            # from anywhere; REPEAT=5 bash bench/compile_time.sh
#
# Targets, all at -O2:
#  (a) a file that only includes <mlnc/mlnc.hpp> compiles in at most 1/3 of 517fa28's time;
#  (b) every public header alone (include/mlnc/**/*.hpp but cuda/ and detail/) compiles in at most
#      twice the time of a file that includes only the dependencies: Eigen/Dense, Boost's root
#      finders, LBFGSpp's <LBFGS.h> and every standard (and POSIX) header the library includes;
#  (c) the research program (bench/compile_time/research.cpp, narrow headers) compiles in at most
#      half the time of the same program against 517fa28 (research_517fa28.cpp, <mlnc/mlnc.hpp>),
#      as a program linked to mlnc::precompiled compiles it (-DMLNC_PRECOMPILED=1; the library is
#      built once, with mlnc). The header-only build of the program is printed too, for the record.
#
# Each translation unit is compiled REPEAT times (default 3), one compilation at a time, in rounds
# over all of them (so that a change of machine load touches every row alike); the table keeps the
# minimum wall time of each. Nothing is written inside the repository: the reference headers and
# the generated files live in a temporary folder that is removed on exit.
#
# Environment: CXX (default g++), REPEAT (default 3), REF (default 517fa28), EIGEN_INCLUDE
# (default /usr/include/eigen3), STRICT=1 to exit 1 when a target is missed.
# Exit status: 0, or 1 when a compilation failed (or, with STRICT=1, a target was missed).

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$script_dir/.." && pwd)
cd "$root"

CXX=${CXX:-g++}
REPEAT=${REPEAT:-3}
REF=${REF:-517fa28}
EIGEN_INCLUDE=${EIGEN_INCLUDE:-/usr/include/eigen3}
STRICT=${STRICT:-0}
FLAGS=(-std=c++20 -O2 -c)

if ! [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]]; then
    echo "compile_time.sh: REPEAT must be a positive integer, got '$REPEAT'" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mlnc_compile_time.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ref" "$tmp/tu"

# (i) The reference: 517fa28's headers.
git -C "$root" archive "$REF" include | tar -x -C "$tmp/ref"
ref_commit=$(git -C "$root" rev-parse --short=12 "$REF^{commit}")

now_inc=(-I "$root/include" -I "$EIGEN_INCLUDE")
ref_inc=(-I "$tmp/ref/include" -I "$EIGEN_INCLUDE")

# The public headers of the current tree, as include paths (mlnc/labels.hpp, mlnc/io/npy.hpp, ...).
mapfile -t headers < <(cd "$root/include" &&
    find mlnc -name '*.hpp' -not -path 'mlnc/cuda/*' -not -path 'mlnc/detail/*' | LC_ALL=C sort)

# The dependency TU: the third-party headers, then every <...> header the library includes that is
# neither mlnc's nor a third party's (the standard library and POSIX), CUDA headers excepted.
mapfile -t system_headers < <(
    find "$root/include/mlnc" -name '*.hpp' -not -path '*/cuda/*' -exec cat {} + |
        sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<([^>]+)>.*/\1/p' |
        grep -vE '^(mlnc/|Eigen/|boost/|LBFGS|cuda)' | LC_ALL=C sort -u)
{
    echo '// The dependencies of mlnc, and nothing of mlnc.'
    echo '#include <Eigen/Dense>'
    echo '#include <boost/math/tools/roots.hpp>'
    echo '#include <boost/math/tools/toms748_solve.hpp>'
    echo '#include <LBFGS.h>'
    for h in "${system_headers[@]}"; do echo "#include <$h>"; done
} >"$tmp/tu/deps.cpp"

# The rows: name, source file, include set (now | ref), reference row, target.
names=() sources=() incsets=()
add_tu() { names+=("$1"); sources+=("$2"); incsets+=("$3"); }

add_tu "dependencies only" "$tmp/tu/deps.cpp" now
echo '#include <mlnc/mlnc.hpp>' >"$tmp/tu/umbrella.cpp"
add_tu "mlnc.hpp ($REF)" "$tmp/tu/umbrella.cpp" ref
add_tu "mlnc.hpp (now)" "$tmp/tu/umbrella.cpp" now
header_rows=()
for h in "${headers[@]}"; do
    if [[ "$h" == mlnc/mlnc.hpp ]]; then
        header_rows+=("mlnc.hpp (now)")  # the same TU as the row above: measured once
        continue
    fi
    f="$tmp/tu/h_$(echo "$h" | tr '/.' '__').cpp"
    echo "#include <$h>" >"$f"
    add_tu "$h" "$f" now
    header_rows+=("$h")
done
add_tu "research program ($REF)" "$root/bench/compile_time/research_517fa28.cpp" ref
add_tu "research program (now)" "$root/bench/compile_time/research.cpp" now
add_tu "research program (now, mlnc::precompiled)" "$root/bench/compile_time/research.cpp" pc

# (ii) Compile, REPEAT rounds over all TUs, one compilation at a time; keep each minimum.
declare -A best=() failed=()
compile() {  # compile <index>: prints the wall time in seconds, or returns 1
    local i=$1 t0 t1
    local -a inc
    case "${incsets[$i]}" in
        ref) inc=("${ref_inc[@]}") ;;
        pc) inc=("${now_inc[@]}" -DMLNC_PRECOMPILED=1) ;;
        *) inc=("${now_inc[@]}") ;;
    esac
    t0=$(date +%s.%N)
    if ! "$CXX" "${FLAGS[@]}" "${inc[@]}" "${sources[$i]}" -o "$tmp/out.o" 2>"$tmp/err"; then
        return 1
    fi
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
total=$((REPEAT * ${#names[@]})) done_count=0
for ((r = 1; r <= REPEAT; ++r)); do
    for i in "${!names[@]}"; do
        done_count=$((done_count + 1))
        [[ -n "${failed[$i]:-}" ]] && continue
        printf '\r[%d/%d] %-45s' "$done_count" "$total" "${names[$i]}" >&2
        if s=$(compile "$i"); then
            if [[ -z "${best[$i]:-}" ]] || awk -v a="$s" -v b="${best[$i]}" 'BEGIN { exit !(a < b) }'; then
                best[$i]=$s
            fi
        else
            failed[$i]=1
            printf '\ncompile_time.sh: %s failed to compile:\n' "${names[$i]}" >&2
            head -n 30 "$tmp/err" >&2
        fi
    done
done
printf '\r%-60s\r' '' >&2

# (iii) The table.
index_of() {
    local i
    for i in "${!names[@]}"; do [[ "${names[$i]}" == "$1" ]] && { echo "$i"; return; }; done
    return 1
}
secs() { local i; i=$(index_of "$1"); if [[ -n "${failed[$i]:-}" ]]; then echo failed; else echo "${best[$i]}"; fi; }
# ratio <num> <den> <limit>: "ratio yes|no", or "n/a n/a" when either time is missing
ratio() {
    if [[ "$1" == failed || "$2" == failed ]]; then echo "n/a n/a"; return; fi
    awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { q = a / b; printf "%.2f %s\n", q, (q <= l + 1e-12 ? "yes" : "no") }'
}

deps=$(secs "dependencies only")
um_ref=$(secs "mlnc.hpp ($REF)")
um_now=$(secs "mlnc.hpp (now)")
rp_ref=$(secs "research program ($REF)")
rp_now=$(secs "research program (now)")
rp_pc=$(secs "research program (now, mlnc::precompiled)")
missed=0
row() {  # row <name> <seconds> <ratio> <ratio of> <target> <meets>
    printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
    [[ "$6" == no || "$6" == n/a ]] && missed=1
    return 0
}

cpu=$(sed -nE 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
echo "## Compile time at -O2: the current tree against $REF ($ref_commit)"
echo
echo "- compiler: $("$CXX" --version | head -n 1)"
echo "- CPU: ${cpu:-unknown}; nproc: $(nproc)"
echo "- command: \`$CXX ${FLAGS[*]} -I <tree>/include -I $EIGEN_INCLUDE TU.cpp\`, <tree> the current tree" \
    "or $REF's include/ (git archive); each TU ${REPEAT}x, one at a time, minimum wall time"
echo "- dependencies TU: <Eigen/Dense>, <boost/math/tools/roots.hpp>, <boost/math/tools/toms748_solve.hpp>," \
    "<LBFGS.h> and the ${#system_headers[@]} standard/POSIX headers the library includes"
echo
echo '| translation unit | seconds | ratio | ratio of | target | meets target |'
echo '|---|---:|---:|---|---|---|'
row "dependencies only" "$deps" "1.00" "itself" "reference for (b)" "-"
row "mlnc.hpp ($REF)" "$um_ref" "1.00" "itself" "reference for (a)" "-"
read -r q ok < <(ratio "$um_now" "$um_ref" "$(awk 'BEGIN { print 1 / 3 }')")
row "mlnc.hpp (now)" "$um_now" "$q" "/ mlnc.hpp ($REF)" "<= 1/3 (a)" "$ok"
for h in "${header_rows[@]}"; do
    t=$(secs "$h")
    read -r q ok < <(ratio "$t" "$deps" 2)
    if [[ "$h" == "mlnc.hpp (now)" ]]; then
        row "mlnc/mlnc.hpp (as above)" "$t" "$q" "/ dependencies" "<= 2 (b)" "$ok"
    else
        row "$h" "$t" "$q" "/ dependencies" "<= 2 (b)" "$ok"
    fi
done
row "research program ($REF)" "$rp_ref" "1.00" "itself" "reference for (c)" "-"
read -r q ok < <(ratio "$rp_pc" "$rp_ref" 0.5)
row "research program (now, mlnc::precompiled)" "$rp_pc" "$q" "/ research program ($REF)" "<= 1/2 (c)" "$ok"
# The header-only build of the same program, for the record: (c) is met through mlnc::precompiled.
read -r q ok < <(ratio "$rp_now" "$rp_ref" 0.5)
printf '| %s | %s | %s | %s | %s | %s |\n' "research program (now, header-only)" "$rp_now" "$q" \
    "/ research program ($REF)" "(header-only, for the record)" "$ok"

status=0
[[ ${#failed[@]} -gt 0 ]] && status=1
[[ "$STRICT" == 1 && $missed == 1 ]] && status=1
exit "$status"

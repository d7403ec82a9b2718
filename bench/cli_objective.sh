#!/usr/bin/env bash
# `mlnc objective` at the shapes of docs/performance.md, on float32 files: wall time and peak
# resident memory of the whole process (/usr/bin/time), and, for the kernel-dominated shape,
# PyTorch's compute alone on the same data (bench/torch_objective.py) in the same run.
#
#   bash bench/cli_objective.sh BUILD_DIR/bin/mlnc [THREADS]
#
# Needs /usr/bin/time and Debian's python3-numpy (python3-torch for the PyTorch row). The data
# (up to ~300 MB) live in a temporary folder that is removed on exit.
set -euo pipefail

mlnc=${1:?usage: cli_objective.sh MLNC_PROGRAM [THREADS]}
threads=${2:-$(nproc)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mlnc_cli_objective.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3

# make <name> K d N: W (K x d), H (N x d), b (K) as float32, labels.txt (1-3 labels per sample).
make() {
    "$py" - "$tmp/$1" "$2" "$3" "$4" <<'EOF'
import os, sys
import numpy as np
out, K, d, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)
np.save(f"{out}/W.npy", (rng.standard_normal((K, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32))
np.save(f"{out}/H.npy", rng.standard_normal((N, d), dtype=np.float32))
np.save(f"{out}/b.npy", np.zeros(K, dtype=np.float32))
m = rng.integers(1, 4, N)
with open(f"{out}/labels.txt", "w") as f:
    for i in range(N):
        f.write(" ".join(str(k) for k in sorted(set(rng.integers(0, K, m[i]).tolist()))) + "\n")
EOF
}

run() {  # run <name>: prints "seconds peak_MB"
    local dir="$tmp/$1"
    OMP_NUM_THREADS=$threads /usr/bin/time -f "%e %M" -o "$tmp/time" "$mlnc" objective --W "$dir/W.npy" \
        --H "$dir/H.npy" --b "$dir/b.npy" --labels "$dir/labels.txt" --lambda-w 1e-4 --lambda-h 1e-4 \
        --lambda-b 1e-4 --grad-out "$dir/grad" --json >/dev/null
    awk '{ printf "%.2f %.0f\n", $1, $2 / 1024 }' "$tmp/time"
}

echo "| case | K | d | N | wall (s) | peak RSS (MB) | target |"
echo "|---|---|---|---|---|---|---|"
make kernel 2000 4 20000
read -r s mb < <(run kernel)
echo "| kernel-dominated | 2000 | 4 | 20000 | $s | $mb | whole process >= 8x faster than PyTorch's compute |"
if torch_s=$("$py" "$here/torch_objective.py" "$tmp/kernel" "$threads" 2>/dev/null); then
    awk -v a="$s" -v b="$torch_s" 'BEGIN { printf "| PyTorch compute alone, same data | | | | %.2f | | ratio %.1f |\n", b, b / a }'
else
    echo "| PyTorch compute alone | | | | n/a (python3-torch missing) | | |"
fi
make wide 100000 256 4096
read -r s mb < <(run wide)
echo "| large K | 100000 | 256 | 4096 | $s | $mb | peak < 600 MB |"
rm -rf "$tmp/wide"
make huge 1000000 64 2048
read -r s mb < <(run huge)
echo "| K = 10^6 | 1000000 | 64 | 2048 | $s | $mb | peak < 800 MB |"
echo
isa=avx2
grep -q avx512f /proc/cpuinfo && isa=avx512f
grep -q avx2 /proc/cpuinfo || isa="no AVX2"
echo "threads: $threads; $isa machine, $(nproc) cores"

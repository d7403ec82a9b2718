#!/usr/bin/env bash
# The CUDA backend's one GPU run: configure and build the CUDA tests and the GPU benchmark
# (bench/gpu/CMakeLists.txt: nvcc, CMake and the headers in .gpu-deps/ only), run the tests, then
# the benchmark and PyTorch's references (bench/torch_gpu.py), and print one table. For a machine
# with a GPU, nvcc, CMake and PyTorch and nothing else; run `make gpu-deps` first where Eigen and
# Catch2 are installed, and carry .gpu-deps/ along. Budget: under 6 minutes on an H100/H200.
#   usage: bench/gpu_check.sh [BUILD_DIR]   (default build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
cmake -S bench/gpu -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
time cmake --build "$build" -j "$(nproc)"
(cd "$build" && ctest --output-on-failure) || echo "mlnc: CUDA tests FAILED (see above)"
"$build/mlnc_gpu_bench" --sweep | tee "$build/mlnc.jsonl"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 bench/torch_gpu.py | tee "$build/torch.jsonl"
else
  echo "mlnc: no PyTorch with CUDA here: the PyTorch columns stay empty"
  : > "$build/torch.jsonl"
fi
python3 - "$build/mlnc.jsonl" "$build/torch.jsonl" <<'PY'
import json, sys
mlnc = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
def torch_ms(case, **kw):
    for t in torch:
        if t["case"] == case and all(t[k] == v for k, v in kw.items()):
            return t["torch_ms"]
    return None
print()
print(f"{'case':44} {'mlnc ms':>9} {'ref ms':>9} {'ratio':>7}  target")
for r in mlnc:
    if r["case"] == "pal_inplace":
        name = f"PAL-CE loss+grad in place K={r['K']} N={r['N']}"
        print(f"{name + ' vs D2D copy':44} {r['mlnc_ms']:9.3f} {r['copy_ms']:9.3f} {r['copy_ms'] / r['mlnc_ms']:7.2f}  >= 0.80 of copy bandwidth")
        t = torch_ms("cross_entropy", K=r["K"], N=r["N"])
        if t is not None:
            print(f"{'  vs torch F.cross_entropy fwd+bwd':44} {r['mlnc_ms']:9.3f} {t:9.3f} {t / r['mlnc_ms']:7.2f}  >= 3x")
    elif r["case"] == "objective":
        t = torch_ms("objective", K=r["K"], d=r["d"], N=r["N"])
        name = f"objective+grads K={r['K']} d={r['d']} N={r['N']} ws={r['workspace_mib']}MiB"
        ratio = f"{t / r['mlnc_ms']:7.2f}" if t else "      -"
        print(f"{name:44} {r['mlnc_ms']:9.3f} {(t or float('nan')):9.3f} {ratio}  >= 1.2x torch autograd")
    elif r["case"] == "objective_memory":
        name = f"objective memory K={r['K']} d={r['d']} N={r['N']}"
        print(f"{name:44} {r['extra_mb']:9.1f} MB beyond inputs and gradients (tiled: {r['tiled']})  < 200 MB")
    elif r["case"] == "ufm_eval":
        name = f"verify objective K=200 N={r['N']}: host x vs device x"
        print(f"{name:44} {r['host_ms']:9.3f} {r['device_ms']:9.3f} {r['host_ms'] / r['device_ms']:7.2f}  "
              f"(copies: {r['mb_each_way']:.1f} MB each way per evaluation)")
    elif r["case"] == "train":
        name = f"verify case trained, {r['method']}"
        print(f"{name:44} {r['seconds'] * 1e3:9.0f} ms, {r['iterations']} iterations, {r['evaluations']} evaluations, "
              f"{r['status']}, f = {r['objective']:.15g}")
rows = [r for r in mlnc if r["case"] in ("sweep", "shape")]
if rows:
    print()
    print("PAL-CE loss+grad in place, 256 MiB of logits: the shape fused_launch picks (sweep), others (shape)")
    print(f"{'type':7} {'K':>6} {'N':>8} {'shape':22} {'ms':>8} {'streamed':>9} {'copy':>7} {'% of copy':>9}")
    for r in rows:
        shape = {"lanes": f"{r['lanes']} lanes a column", "block": f"block of {r['threads']}",
                 "pipelined": f"pipelined, {r['threads']}",
                 "cluster": f"{r['cluster']} blocks of {r['threads']}"}.get(r["kernel"], r["kernel"])
        streamed = f"{r['streamed_ms']:9.4f}" if "streamed_ms" in r else " " * 9
        mark = "" if r["case"] == "sweep" else "  (other)"
        print(f"{r['type']:7} {r['K']:6d} {r['N']:8d} {shape:22} {r['mlnc_ms']:8.4f} {streamed} {r['copy_ms']:7.4f} "
              f"{100 * r['copy_ms'] / r['mlnc_ms']:8.1f}%{mark}")
PY

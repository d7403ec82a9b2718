#!/usr/bin/env python3
"""Runs bench/mlnc_bench and bench/torch_pal.py and prints the ratios docs/performance.md reports.

usage: bench/compare.py BUILD_DIR/bench/mlnc_bench [--min-time 0.3]
Ratios: each kernel's time over the memory copy of the same bytes on as many threads, measured
in the same process (machine-independent), and PyTorch's time over mlnc's at the same thread
count (how many times faster mlnc is).
"""
import argparse
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
# Debian's python3-torch installs for the system interpreter, which may not be the first python3.
TORCH_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def run_bench(bench, pattern, min_time):
    """Seconds per iteration of each benchmark matching pattern, keyed (name, arg1, arg2, arg3)."""
    g = json.loads(subprocess.run([bench, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                                   f"--benchmark_min_time={min_time}"], check=True, capture_output=True,
                                  text=True).stdout)
    out = {}
    for b in g["benchmarks"]:
        name, x, y, z = b["name"].split("/")[:4]
        out[(name, int(x), int(y), int(z))] = b["real_time"] * {"us": 1e-6, "ms": 1e-3, "ns": 1e-9}[b["time_unit"]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--min-time", default="0.3")
    a = ap.parse_args()
    t = run_bench(a.bench, "Copy|PalLoss", a.min_time)
    threads = sorted({k[3] for k in t})
    torch_res = None
    try:
        torch_res = json.loads(subprocess.run([TORCH_PYTHON, os.path.join(here, "torch_pal.py")] + [str(n) for n in threads],
                                              check=True, capture_output=True, text=True).stdout)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"(PyTorch reference unavailable: {e}; install python3-torch)", file=sys.stderr)
    print("| dtype | threads | K | N | copy (ms) | loss / copy | loss+grad / copy | in place / copy | mlnc loss+grad (ms) "
          "| torch loss+grad (ms) | speed-up vs torch, loss | speed-up vs torch, loss+grad |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype in ("float", "double"):
        for (name, K, N, nt) in sorted(k for k in t if k[0] == f"Copy<{dtype}>"):
            copy = t[(name, K, N, nt)]
            loss = t.get((f"PalLoss<{dtype}>", K, N, nt))
            grad = t.get((f"PalLossGrad<{dtype}>", K, N, nt))
            inpl = t.get((f"PalLossGradInPlace<{dtype}>", K, N, nt))
            f = lambda x, s=1.0, d=2: "n/a" if x is None else f"{x * s:.{d}f}"
            row = (f"| {dtype} | {nt} | {K} | {N} | {f(copy, 1e3, 3)} | {f(loss and loss / copy)} | "
                   f"{f(grad and grad / copy)} | {f(inpl and inpl / copy)} | {f(grad, 1e3, 3)} |")
            tr = None
            if torch_res:
                tr = next((r for r in torch_res["results"]
                           if r["dtype"] == dtype and r["K"] == K and r["N"] == N and r["threads"] == nt), None)
            if tr and loss and grad:
                row += f" {tr['loss_grad_s'] * 1e3:.3f} | {tr['loss_s'] / loss:.1f} | {tr['loss_grad_s'] / grad:.1f} |"
            else:
                row += " n/a | n/a | n/a |"
            print(row)
    if torch_res:
        print(f"\nPyTorch {torch_res['torch']}, at the same thread counts.")

    # The objective with gradients against the same three GEMMs measured alone.
    o = run_bench(a.bench, "Objective|Gemm3", a.min_time)
    print("\n| dtype | K | N | d | objective (ms) | three GEMMs alone (ms) | objective / GEMMs |")
    print("|---|---|---|---|---|---|---|")
    for dtype in ("float", "double"):
        for (name, K, N, d) in sorted(k for k in o if k[0] == f"Gemm3<{dtype}>"):
            obj = o.get((f"Objective<{dtype}>", K, N, d))
            gem = o[(name, K, N, d)]
            if obj:
                print(f"| {dtype} | {K} | {N} | {d} | {obj * 1e3:.1f} | {gem * 1e3:.1f} | {obj / gem:.2f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs bench/mlnc_bench and bench/torch_pal.py and prints the ratios docs/performance.md reports.

usage: bench/compare.py BUILD_DIR/bench/mlnc_bench [--min-time 0.3]
Ratios: each kernel's time over the memory copy of the same bytes measured in the same
process (machine-independent), and mlnc's time over PyTorch's (both single-threaded).
"""
import argparse
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
# Debian's python3-torch installs for the system interpreter, which may not be the first python3.
TORCH_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--min-time", default="0.3")
    a = ap.parse_args()
    g = json.loads(subprocess.run([a.bench, "--benchmark_filter=Copy|PalLoss", "--benchmark_format=json",
                                   f"--benchmark_min_time={a.min_time}"], check=True, capture_output=True,
                                  text=True).stdout)
    t = {}
    for b in g["benchmarks"]:
        name, K, N = b["name"].split("/")[:3]
        t[(name, int(K), int(N))] = b["real_time"] * {"us": 1e-6, "ms": 1e-3, "ns": 1e-9}[b["time_unit"]]
    torch_res = None
    try:
        torch_res = json.loads(subprocess.run([TORCH_PYTHON, os.path.join(here, "torch_pal.py")], check=True, capture_output=True,
                                             text=True).stdout)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"(PyTorch reference unavailable: {e}; install python3-torch)", file=sys.stderr)
    print("| dtype | K | N | loss / copy | loss+grad / copy | mlnc loss+grad (ms) | torch loss+grad (ms) | mlnc / torch (loss+grad) | mlnc / torch (loss) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in ("float", "double"):
        for (name, K, N) in sorted(k for k in t if k[0] == f"Copy<{dtype}>"):
            copy = t[(name, K, N)]
            loss = t[(f"PalLoss<{dtype}>", K, N)]
            grad = t[(f"PalLossGrad<{dtype}>", K, N)]
            row = f"| {dtype} | {K} | {N} | {loss / copy:.1f} | {grad / copy:.1f} | {grad * 1e3:.3f} |"
            tr = None
            if torch_res:
                tr = next((r for r in torch_res["results"] if r["dtype"] == dtype and r["K"] == K and r["N"] == N), None)
            if tr:
                row += f" {tr['loss_grad_s'] * 1e3:.3f} | {grad / tr['loss_grad_s']:.2f} | {loss / tr['loss_s']:.2f} |"
            else:
                row += " n/a | n/a | n/a |"
            print(row)
    if torch_res:
        print(f"\nPyTorch {torch_res['torch']}, {torch_res['threads']} thread(s).")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs bench/mlnc_bench and bench/torch_pal.py and prints the ratios docs/performance.md reports.

usage: bench/compare.py BUILD_DIR/bench/mlnc_bench [--min-time 0.3] [--tables pal,objective,theory] [--rounds 1]
Ratios: each kernel's time over the memory copy of the same bytes on as many threads, measured
in the same process (machine-independent), and PyTorch's time over mlnc's at the same thread
count (how many times faster mlnc is); with --rounds R, both run R times in turn and each time is
the minimum of its R (a steadier figure on a machine whose speed wanders). The third table
(bench/bench_theory.cpp): the closed form, the decoders and the trainer, each over its reference
from the same run.
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


def run_bench_rows(bench, pattern, min_time):
    """Every benchmark matching pattern: {(name, args...): (seconds or None, the entry)}; an entry
    that failed (SkipWithError) has seconds None and its message in entry["error_message"]."""
    g = json.loads(subprocess.run([bench, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                                   f"--benchmark_min_time={min_time}"], check=True, capture_output=True,
                                  text=True).stdout)
    out = {}
    for b in g["benchmarks"]:
        parts = b["name"].split("/")
        key = (parts[0],) + tuple(int(p) for p in parts[1:] if p.isdigit())
        sec = None
        if not b.get("error_occurred"):
            sec = b["real_time"] * {"us": 1e-6, "ms": 1e-3, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
        out[key] = (sec, b)
    return out


def fmt_time(sec):
    if sec is None:
        return "n/a"
    return f"{sec * 1e6:.1f} us" if sec < 1e-3 else f"{sec * 1e3:.2f} ms"


def theory_table(bench, min_time):
    """The closed form, the decoders and the trainer (bench_theory.cpp) over their references."""
    t = run_bench_rows(bench, "^(ClosedForm|DecodeTagwise|DecodeOnn|GemmDecode|Trainer)", min_time)
    print("\n| benchmark | size | threads | time | reference | reference time | ratio | counters |")
    print("|---|---|---|---|---|---|---|---|")

    def row(what, size, threads, key, ref_name, ref_key, notes):
        sec, b = t.get(key, (None, {}))
        ref, rb = t.get(ref_key, (None, {}))
        if b.get("error_occurred") or rb.get("error_occurred"):
            notes = "FAILED: " + (b.get("error_message") or rb.get("error_message", ""))
        ratio = f"{sec / ref:.2f}" if sec and ref else "n/a"
        print(f"| {what} | {size} | {threads} | {fmt_time(sec)} | {ref_name} | {fmt_time(ref)} | {ratio} | {notes} |")

    g = lambda key, c, spec: format(t[key][1][c], spec) if key in t and c in t[key][1] else "n/a"
    for key in sorted(k for k in t if k[0] == "ClosedForm"):
        K, M = key[1:3]
        row("closed form (global_optimum)", f"K = {K}, M = {M}, n_m = 1", 1, key,
            "F(Delta) at the solution (reduced_objective)", ("ClosedFormF", K, M),
            f"Newton steps {g(key, 'newton', '.0f')}, outer {g(key, 'outer', '.0f')}")
    for dec, label in (("DecodeTagwise", "tag-wise decoder"), ("DecodeOnn", "ONN")):
        for key in sorted(k for k in t if k[0] == dec):
            K, d, n, nt = key[1:5]
            rows = K if dec == "DecodeTagwise" else int(t[key][1].get("G", 2 * K))
            size = f"K = {K}, d = {d}, batch = {n}" + ("" if dec == "DecodeTagwise" else f", G = {rows}")
            row(label, size, nt, key, f"GEMM ({rows} x {d}) ({d} x {n})", ("GemmDecode", rows, d, n, nt),
                f"exact {g(key, 'exact', '.3f')}")
    for key in sorted(k for k in t if k[0] == "Trainer"):
        K, d = key[1:3]
        row("trainer (train_ufm<double>, L-BFGS)", f"K = {K}, d = {d}, N = {g(key, 'N', '.0f')}", 1, key,
            "one objective evaluation with gradients", ("TrainerEval", K, d),
            f"iterations {g(key, 'iterations', '.0f')}, evaluations {g(key, 'evaluations', '.0f')}, "
            f"gap to f* {g(key, 'gap', '.1e')}")
    print("\nratio = time / reference time, both measured in this run (real time). Decoders: cpu{threads};"
          " their GEMM reference runs on `threads` threads. Closed form and trainer: one thread.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--min-time", default="0.3")
    ap.add_argument("--tables", default="pal,objective,theory",
                    help="which tables, comma-separated: pal (the logits kernel against the copy and PyTorch), "
                         "objective (against three GEMMs), theory (closed form, decoders, trainer)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="pal table: run mlnc_bench and PyTorch this many times in turn, keep each minimum")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error(f"--rounds: must be at least 1, got {a.rounds}")
    tables = set(a.tables.split(","))
    if not tables <= {"pal", "objective", "theory"}:
        ap.error(f"--tables: unknown table in {a.tables!r} (pal, objective, theory)")
    if "pal" in tables:
        pal_table(a.bench, a.min_time, a.rounds)
    if "objective" in tables:
        objective_table(a.bench, a.min_time)
    if "theory" in tables:
        theory_table(a.bench, a.min_time)


def pal_table(bench, min_time, rounds=1):
    t = {}
    torch_res = None
    for r in range(rounds):
        for key, sec in run_bench(bench, "Copy|PalLoss", min_time).items():
            t[key] = min(sec, t.get(key, sec))
        threads = sorted({k[3] for k in t})
        try:
            res = json.loads(subprocess.run([TORCH_PYTHON, os.path.join(here, "torch_pal.py")] + [str(n) for n in threads],
                                            check=True, capture_output=True, text=True).stdout)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"(PyTorch reference unavailable: {e}; install python3-torch)", file=sys.stderr)
            continue
        if torch_res is None:
            torch_res = res
        else:
            for old, new in zip(torch_res["results"], res["results"]):
                for f in ("loss_s", "loss_grad_s"):
                    old[f] = min(old[f], new[f])
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
        print(f"\nPyTorch {torch_res['torch']}, at the same thread counts." +
              (f" Each time the minimum of {rounds} runs, mlnc and PyTorch in turn." if rounds > 1 else ""))


def objective_table(bench, min_time):
    """The objective with gradients against the same three GEMMs measured alone."""
    o = run_bench(bench, "Objective|Gemm3", min_time)
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

#!/usr/bin/env python3
"""PyTorch reference for the PAL-CE kernels, at the thread counts of mlnc's benchmarks.

usage: torch_pal.py [THREADS ...]   (default: 1 2)
Prints JSON: for each (threads, dtype, K, N) the seconds per call of the loss alone and of loss
plus dLoss/dZ (autograd), and a memory-copy reference over the same K x N buffer (torch clone),
all measured in this process. Run by bench/compare.py; needs Debian's python3-torch.
"""
import json
import sys
import time

import torch

SHAPES = [(10, 100000), (100, 10000), (1000, 4096), (100000, 64)]


def labels(K, N, gen):
    # Same law as bench_pal.cpp: multiplicity 1..3, distinct labels; as a multi-hot matrix.
    m = torch.randint(1, 4, (N,), generator=gen)
    y = torch.zeros(N, K)
    for i in range(N):
        y[i, torch.randperm(K, generator=gen)[: int(m[i])]] = 1.0
    return y


def pal_loss(z, y, m):
    # z: N x K logits (rows are samples, the same memory as mlnc's K x N column-major Z).
    return (m * torch.logsumexp(z, dim=1) - (y * z).sum(dim=1)).mean()


def timeit(fn, min_time=0.3):
    fn()
    reps, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / reps
        reps *= 2


def main():
    threads = [int(a) for a in sys.argv[1:]] or [1, 2]
    out = []
    for nt in threads:
        torch.set_num_threads(nt)
        gen = torch.Generator().manual_seed(1)
        for dtype in (torch.float32, torch.float64):
            for K, N in SHAPES:
                y = labels(K, N, gen).to(dtype)
                m = y.sum(dim=1)
                z0 = (torch.rand(N, K, generator=gen, dtype=dtype) * 2 - 1) * 4

                def loss_only():
                    with torch.no_grad():
                        return pal_loss(z0, y, m).item()

                z = z0.clone().requires_grad_(True)

                def loss_grad():
                    z.grad = None
                    loss = pal_loss(z, y, m)
                    loss.backward()
                    return loss.item()

                def copy():
                    return z0.clone()

                out.append({"threads": nt, "dtype": "float" if dtype == torch.float32 else "double", "K": K,
                            "N": N, "copy_s": timeit(copy), "loss_s": timeit(loss_only),
                            "loss_grad_s": timeit(loss_grad)})
    json.dump({"torch": torch.__version__, "results": out}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

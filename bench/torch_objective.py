#!/usr/bin/env python3
"""PyTorch's compute alone for `mlnc objective` on the files bench/cli_objective.sh writes.

usage: torch_objective.py DIR THREADS
Loads W, H, b (float32) and the label sets, then times (best of 3) the objective of Problem (4)
with PAL-CE and its gradients by autograd: Z = H W^T + b, m logsumexp(Z) - <Y, Z>, the penalties
(lambda 1e-4 each), backward. Prints the seconds of one evaluation; loading is not counted.
"""
import sys
import time

import numpy as np
import torch


def main():
    d, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    W = torch.from_numpy(np.load(f"{d}/W.npy")).requires_grad_(True)
    H = torch.from_numpy(np.load(f"{d}/H.npy")).requires_grad_(True)
    b = torch.from_numpy(np.load(f"{d}/b.npy")).requires_grad_(True)
    K, N = W.shape[0], H.shape[0]
    Y = torch.zeros(N, K)
    with open(f"{d}/labels.txt") as f:
        for i, line in enumerate(f):
            for k in line.split():
                Y[i, int(k)] = 1.0
    m = Y.sum(dim=1)
    lam = 1e-4

    def step():
        for p in (W, H, b):
            p.grad = None
        Z = H @ W.T + b
        loss = (m * torch.logsumexp(Z, dim=1) - (Y * Z).sum(dim=1)).mean()
        f = loss + lam * (W * W).sum() + lam * (H * H).sum() + lam * (b * b).sum()
        f.backward()
        return f.item()

    step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    print(f"{best:.4f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch references of bench/gpu_check.sh, on the GPU, timed with CUDA events (median of 20
after 3 warm-ups), float32, TF32 off (as mlnc's default):
  - cross_entropy K N: F.cross_entropy with multi-hot float targets (PAL-CE summed over the labels,
    mean over samples), forward + backward, at the shapes of gpu_bench's pal_inplace;
  - objective K d N: f(W, H, b) = PAL-CE(W H + b) + penalties with autograd gradients.
Prints one JSON object per line.
"""
import json

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")


def median_ms(f):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        f()
    t = []
    for _ in range(20):
        a.record()
        f()
        b.record()
        b.synchronize()
        t.append(a.elapsed_time(b))
    return sorted(t)[10]


def multi_hot(N, K, gen):
    # Multiplicities 1..3, distinct labels, as in gpu_bench.cu.
    m = torch.randint(1, 4, (N,), generator=gen, device=dev)
    scores = torch.rand(N, K, generator=gen, device=dev)
    idx = scores.topk(3, dim=1).indices
    keep = torch.arange(3, device=dev)[None, :] < m[:, None]
    y = torch.zeros(N, K, device=dev)
    y.scatter_(1, idx, keep.float())
    return y


def cross_entropy(K, N):
    gen = torch.Generator(device=dev).manual_seed(1)
    z = (3 * torch.randn(N, K, generator=gen, device=dev)).requires_grad_()
    y = multi_hot(N, K, gen)

    def step():
        z.grad = None
        F.cross_entropy(z, y).backward()

    print(json.dumps({"case": "cross_entropy", "K": K, "N": N, "torch_ms": median_ms(step)}), flush=True)


def objective(K, d, N):
    gen = torch.Generator(device=dev).manual_seed(2)
    W = (0.05 * torch.randn(K, d, generator=gen, device=dev)).requires_grad_()
    H = (0.05 * torch.randn(d, N, generator=gen, device=dev)).requires_grad_()
    b = (0.05 * torch.randn(K, generator=gen, device=dev)).requires_grad_()
    y = multi_hot(N, K, gen)

    def step():
        for p in (W, H, b):
            p.grad = None
        z = (W @ H + b[:, None]).t()
        f = F.cross_entropy(z, y) + 1e-4 * (W.square().sum() + H.square().sum() + b.square().sum())
        f.backward()

    print(json.dumps({"case": "objective", "K": K, "d": d, "N": N, "torch_ms": median_ms(step)}), flush=True)


if __name__ == "__main__":
    cross_entropy(1000, 65536)
    cross_entropy(32000, 8192)
    objective(32000, 256, 8192)

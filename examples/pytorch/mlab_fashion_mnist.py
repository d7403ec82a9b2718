#!/usr/bin/python3
"""Multi-label Fashion-MNIST, a small CNN trained with the PAL-CE loss, and a dump of its
features and classifier for `mlnc metrics` / `mlnc predict` (docs/walkthrough.md).

Data set (built the way the paper builds M-lab MNIST):
  * every sample is a 56 x 56 canvas cut into four 28 x 28 quadrants;
  * a sample of multiplicity m holds m Fashion-MNIST images of m DIFFERENT classes, each in
    its own quadrant (so images never overlap); its label set is the set of those classes;
  * --placement random (default): the m quadrants are drawn at random per sample;
    --placement fixed: the images fill the quadrants in the order top-left, bottom-right,
    top-right, bottom-left, by increasing class index;
  * counts are balanced within a multiplicity (the assumption of Theorem 1) and imbalanced
    between multiplicities: --train-n 1:300,2:10 means 300 samples for each single class and
    10 samples for each of the 45 pairs (3000 + 450 samples);
  * every source image is used at most once; training canvases come from the Fashion-MNIST
    training file, test canvases from its test file.

Network: three conv blocks (conv + batch norm + ReLU, with pooling), then a linear feature
layer of dimension d (no activation after it, so the features are as unconstrained as the
network allows), then a linear classifier with bias to K = 10 logits.

Loss (PAL-CE, written out): L(z, S) = |S| * logsumexp(z) - sum_{k in S} z_k, averaged over the
batch; SGD with momentum, weight decay on every parameter, and a cosine learning-rate decay. Note that a sample of
multiplicity m cannot go below m log m (its softmax puts at most 1/m on each of its labels), so
"terminal phase" means that the EXCESS loss, loss - mean(m log m), goes to zero.

Written files (numpy.save: little-endian, C order):
  train_features.npy  N x d float32   train_labels.txt   one line per sample, 0-based labels
  test_features.npy   N' x d float32  test_labels.txt
  classifier.npy      K x d float32   bias.npy           K float32
Features are computed after training with the network in evaluation mode.
"""

import argparse
import gzip
import itertools
import math
import os
import struct
import sys
import time

K = 10
SIDE = 28
CANVAS = 2 * SIDE
# Quadrant offsets (row, col); the "fixed" placement uses them in this order.
QUADRANTS = [(0, 0), (SIDE, SIDE), (0, SIDE), (SIDE, 0)]
MAX_MULT = len(QUADRANTS)
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------------------------
# Arguments

def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    if v <= 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got %d" % v)
    return v


def nonnegative_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer >= 0, got %r" % text)
    if v < 0:
        raise argparse.ArgumentTypeError("expected an integer >= 0, got %d" % v)
    return v


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive number, got %r" % text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError("expected a finite number > 0, got %r" % text)
    return v


def fraction(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number in [0, 1), got %r" % text)
    if not (math.isfinite(v) and 0 <= v < 1):
        raise argparse.ArgumentTypeError("expected a number in [0, 1), got %r" % text)
    return v


def nonnegative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number >= 0, got %r" % text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError("expected a finite number >= 0, got %r" % text)
    return v


def counts_spec(text):
    """'1:300,2:10' -> {1: 300, 2: 10} (samples per label set of each multiplicity)."""
    counts = {}
    for part in text.split(","):
        fields = part.strip().split(":")
        if len(fields) != 2:
            raise argparse.ArgumentTypeError("%r: expected m:n pairs separated by commas, e.g. 1:300,2:10" % text)
        try:
            m, n = int(fields[0]), int(fields[1])
        except ValueError:
            raise argparse.ArgumentTypeError("%r: %r is not m:n with integers m and n" % (text, part))
        if not 1 <= m <= MAX_MULT:
            raise argparse.ArgumentTypeError("%r: multiplicity %d is outside 1..%d (a 56x56 canvas has %d quadrants)"
                                             % (text, m, MAX_MULT, MAX_MULT))
        if n < 0:
            raise argparse.ArgumentTypeError("%r: count %d is negative" % (text, n))
        if m in counts:
            raise argparse.ArgumentTypeError("%r: multiplicity %d given twice" % (text, m))
        counts[m] = n
    counts = {m: n for m, n in counts.items() if n > 0}
    if not counts:
        raise argparse.ArgumentTypeError("%r: every count is 0, no samples" % text)
    return counts


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Build multi-label Fashion-MNIST (56x56 canvases, one Fashion-MNIST image per "
                    "label, different classes in different quadrants), train a small CNN with the "
                    "PAL-CE loss into the terminal phase, and dump features, labels and classifier "
                    "as .npy / text files for `mlnc metrics` and `mlnc predict`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA,
                   help="folder with the four gzip'd IDX files (apt-get install dataset-fashion-mnist)")
    p.add_argument("--out", default="./mlab-fmnist", help="output folder (created if missing)")
    p.add_argument("--train-n", type=counts_spec, default="1:300,2:10",
                   help="training samples per label set, m:n for each multiplicity m")
    p.add_argument("--test-n", type=counts_spec, default="1:100,2:4",
                   help="test samples per label set, m:n for each multiplicity m")
    p.add_argument("--placement", choices=["random", "fixed"], default="random",
                   help="quadrants of the images in a canvas: drawn per sample, or fixed by class order")
    p.add_argument("--feature-dim", type=positive_int, default=64, help="feature dimension d")
    p.add_argument("--epochs", type=positive_int, default=40, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size")
    p.add_argument("--lr", type=positive_float, default=0.05, help="initial SGD learning rate (cosine decay to 0)")
    p.add_argument("--momentum", type=fraction, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=nonnegative_float, default=5e-4,
                   help="weight decay on every parameter (classifier, bias and network)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seeds the data set (images, quadrants, order) and the network")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads; on a 2-core machine shared with other jobs one thread was "
                        "about 5x faster than two (OpenMP threads waiting on each other)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = p.parse_args(argv)

    if args.feature_dim < K - 1:
        print("note: --feature-dim %d < K-1 = %d: a simplex ETF does not fit, collapse cannot be exact"
              % (args.feature_dim, K - 1), file=sys.stderr)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        path = os.path.join(args.data_dir, name)
        if not os.path.isfile(path):
            p.error("--data-dir %s: %s is missing (apt-get install dataset-fashion-mnist)" % (args.data_dir, name))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error("--out %s: exists and is not a folder" % args.out)
    return p, args


# ---------------------------------------------------------------------------------------------
# Data

def read_idx(path, expect_magic):
    """Reads a gzip'd IDX file (big-endian header, uint8 payload) into a numpy array."""
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: truncated IDX header" % path)
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expect_magic:
        raise ValueError("%s: IDX magic %d, expected %d" % (path, magic, expect_magic))
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    size = 1
    for n in dims:
        size *= n
    if len(raw) - offset != size:
        raise ValueError("%s: %d payload bytes, header says %d" % (path, len(raw) - offset, size))
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"), 2051)
    labels = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte.gz"), 2049)
    if images.shape[1:] != (SIDE, SIDE) or images.shape[0] != labels.shape[0]:
        raise ValueError("%s: images %s and labels %s do not match" % (prefix, images.shape, labels.shape))
    return images, labels


def images_needed_per_class(counts):
    # Class k appears in C(K-1, m-1) label sets of size m, each with n_m samples.
    return sum(n * math.comb(K - 1, m - 1) for m, n in counts.items())


def build_canvases(images, labels, counts, placement, rng, split):
    """Returns (canvases N x 1 x 56 x 56 float32 in [0, 1], label sets as sorted tuples)."""
    import numpy as np
    need = images_needed_per_class(counts)
    pools = []
    for k in range(K):
        idx = np.flatnonzero(labels == k)
        if idx.size < need:
            raise ValueError("%s split: class %d has %d images but the counts need %d of each class"
                             % (split, k, idx.size, need))
        pools.append(list(rng.permutation(idx)[:need]))

    sets = []
    for m in sorted(counts):
        for S in itertools.combinations(range(K), m):
            sets.extend([S] * counts[m])
    order = rng.permutation(len(sets))
    sets = [sets[i] for i in order]

    X = np.zeros((len(sets), 1, CANVAS, CANVAS), dtype=np.float32)
    for i, S in enumerate(sets):
        if placement == "random":
            quads = [QUADRANTS[q] for q in rng.permutation(MAX_MULT)[:len(S)]]
        else:
            quads = QUADRANTS[:len(S)]
        for k, (r, c) in zip(S, quads):
            X[i, 0, r:r + SIDE, c:c + SIDE] = images[pools[k].pop()] / np.float32(255.0)
    return X, sets


# ---------------------------------------------------------------------------------------------
# Model and loss

def make_model(torch, d):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 5, stride=2, padding=2, bias=False),   # 56 -> 28
                nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),                                         # 14
                nn.Conv2d(16, 32, 3, padding=1, bias=False),            # 14
                nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),                                         # 7
                nn.Conv2d(32, 64, 3, padding=1, bias=False),            # 7
                nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                nn.Flatten(),
            )
            self.features = nn.Linear(64 * 7 * 7, d)                    # h, no activation after it
            self.classifier = nn.Linear(d, K, bias=True)                # z = W h + b

        def forward(self, x):
            h = self.features(self.body(x))
            return h, self.classifier(h)

    return Net()


def pal_ce(z, y):
    """PAL-CE averaged over the batch: |S| * logsumexp(z) - sum_{k in S} z_k, y multi-hot."""
    m = y.sum(dim=1)
    return (m * z.logsumexp(dim=1) - (z * y).sum(dim=1)).mean()


def multi_hot(torch, sets):
    y = torch.zeros(len(sets), K)
    for i, S in enumerate(sets):
        y[i, list(S)] = 1.0
    return y


def network_predictions(torch, z, max_mult):
    """The network's own decision: labels whose softmax exceeds 1/(M+1), M = the largest training
    multiplicity (at the PAL optimum a sample of multiplicity m puts 1/m on each of its labels and
    ~0 elsewhere); an empty prediction becomes the arg-max label."""
    p = z.softmax(dim=1)
    pred = p > 1.0 / (max_mult + 1)
    empty = ~pred.any(dim=1)
    pred[empty, p[empty].argmax(dim=1)] = True
    return pred


# ---------------------------------------------------------------------------------------------

def save_npy(path, array):
    """numpy.save to a temporary name, then rename: no partial file on failure."""
    import numpy as np
    tmp = path + ".tmp.npy"
    np.save(tmp, np.ascontiguousarray(array, dtype=np.dtype("<f4")))
    os.replace(tmp, path)


def save_labels(path, sets):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for S in sets:
            f.write(" ".join(str(k) for k in S) + "\n")
    os.replace(tmp, path)


def main(argv):
    parser, args = parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.RandomState(args.seed)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    t0 = time.time()
    try:
        train_img, train_lab = load_split(args.data_dir, "train")
        test_img, test_lab = load_split(args.data_dir, "t10k")
        Xtr, Str = build_canvases(train_img, train_lab, args.train_n, args.placement, rng, "train")
        Xte, Ste = build_canvases(test_img, test_lab, args.test_n, args.placement, rng, "test")
    except (OSError, ValueError, EOFError) as e:
        parser.error(str(e))
    Xtr, Xte = torch.from_numpy(Xtr), torch.from_numpy(Xte)
    Ytr, Yte = multi_hot(torch, Str), multi_hot(torch, Ste)
    max_mult = max(args.train_n)

    def describe(counts):
        return ", ".join("m=%d: %d per set x %d sets = %d" % (m, n, math.comb(K, m), n * math.comb(K, m))
                         for m, n in sorted(counts.items()))
    log("train: %d samples (%s)" % (len(Str), describe(args.train_n)))
    log("test:  %d samples (%s)" % (len(Ste), describe(args.test_n)))
    log("placement: %s; d = %d; data built in %.1f s" % (args.placement, args.feature_dim, time.time() - t0))

    model = make_model(torch, args.feature_dim)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    # Cosine decay of the learning rate from --lr to 0 over the epochs.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    floor_tr = float((Ytr.sum(1) * Ytr.sum(1).log()).mean())   # mean of m log m: the loss's infimum

    gen = torch.Generator().manual_seed(args.seed)
    t_train = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(Str), generator=gen)
        total, seen = 0.0, 0
        for start in range(0, len(perm), args.batch_size):
            b = perm[start:start + args.batch_size]
            if len(b) < 2:          # batch norm needs two samples
                continue
            _, z = model(Xtr[b])
            loss = pal_ce(z, Ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * len(b)
            seen += len(b)
        sched.step()
        log("epoch %3d/%d  lr %.4g  train PAL-CE (running) %.5f  excess over m log m %.5f  %.0f s"
            % (epoch + 1, args.epochs, opt.param_groups[0]["lr"], total / seen, total / seen - floor_tr,
               time.time() - t_train))
    train_seconds = time.time() - t_train

    model.eval()

    def evaluate(X, Y):
        hs, zs = [], []
        with torch.no_grad():
            for start in range(0, len(X), 500):
                h, z = model(X[start:start + 500])
                hs.append(h)
                zs.append(z)
        H, Z = torch.cat(hs), torch.cat(zs)
        loss = float(pal_ce(Z.double(), Y.double()))
        floor = float((Y.sum(1) * Y.sum(1).log()).mean())
        pred = network_predictions(torch, Z, max_mult)
        exact = (pred == Y.bool()).all(dim=1)
        by_m = {}
        for m in sorted(set(int(v) for v in Y.sum(1))):
            sel = Y.sum(1) == m
            by_m[m] = float(exact[sel].double().mean())
        return H, loss, floor, float(exact.double().mean()), by_m

    Htr, loss_tr, floor_tr, acc_tr, accm_tr = evaluate(Xtr, Ytr)
    Hte, loss_te, floor_te, acc_te, accm_te = evaluate(Xte, Yte)

    os.makedirs(args.out, exist_ok=True)
    save_npy(os.path.join(args.out, "train_features.npy"), Htr.numpy())
    save_labels(os.path.join(args.out, "train_labels.txt"), Str)
    save_npy(os.path.join(args.out, "test_features.npy"), Hte.numpy())
    save_labels(os.path.join(args.out, "test_labels.txt"), Ste)
    save_npy(os.path.join(args.out, "classifier.npy"), model.classifier.weight.detach().numpy())
    save_npy(os.path.join(args.out, "bias.npy"), model.classifier.bias.detach().numpy())

    def by_m_text(by_m):
        return ", ".join("m=%d %.4f" % kv for kv in by_m.items())
    print("training: %d epochs in %.1f s (%d threads)" % (args.epochs, train_seconds, args.threads))
    print("train: PAL-CE %.6f (floor mean m log m = %.6f, excess %.6f), subset accuracy %.4f (%s)"
          % (loss_tr, floor_tr, loss_tr - floor_tr, acc_tr, by_m_text(accm_tr)))
    print("test:  PAL-CE %.6f (floor mean m log m = %.6f, excess %.6f), subset accuracy %.4f (%s)"
          % (loss_te, floor_te, loss_te - floor_te, acc_te, by_m_text(accm_te)))
    print("network decision rule: labels with softmax > 1/%d, empty -> arg-max" % (max_mult + 1))
    print("||W||_F = %.4f, ||b|| = %.4f, wrote %s/{train,test}_features.npy, {train,test}_labels.txt, "
          "classifier.npy, bias.npy"
          % (float(model.classifier.weight.norm()), float(model.classifier.bias.norm()), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

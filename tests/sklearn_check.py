#!/usr/bin/env python3
"""Optional check of mlnc's multi-label scores against scikit-learn (Debian: python3-sklearn).

Runs `mlnc predict --json --out` on the given files, then scores the written predictions against
the test labels with sklearn.metrics and compares every score, overall and per true multiplicity.

    python3 tests/sklearn_check.py MLNC TRAIN_FEATURES TRAIN_LABELS TEST_FEATURES TEST_LABELS \
        [--method onn|tagwise|ova] [--classifier W.npy]

Label files must be in the text format here. Exit 0 when all scores agree to 1e-12 (or, printing
why, when numpy or scikit-learn is not installed: the check is skipped), 1 on a mismatch, 2 on bad
usage or when mlnc fails. Not part of `make test`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def read_text_labels(path):
    with open(path) as f:
        return [sorted(int(t) for t in line.split()) for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mlnc")
    p.add_argument("train_features")
    p.add_argument("train_labels")
    p.add_argument("test_features")
    p.add_argument("test_labels")
    p.add_argument("--method", default="onn", choices=["onn", "tagwise", "ova"])
    p.add_argument("--classifier")
    a = p.parse_args()
    try:
        import numpy as np
        import sklearn
        from sklearn import metrics
    except ImportError as e:
        print(f"sklearn_check: skipped ({e.name} is not installed)")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pred.txt")
        cmd = [a.mlnc, "predict", "--train-features", a.train_features, "--train-labels", a.train_labels,
               "--test-features", a.test_features, "--test-labels", a.test_labels, "--method", a.method,
               "--out", out, "--json"]
        if a.classifier:
            cmd += ["--classifier", a.classifier]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"sklearn_check: mlnc failed: {run.stderr.strip()}")
            return 2
        got = json.loads(run.stdout)
        pred = read_text_labels(out)

    truth = read_text_labels(a.test_labels)
    train = read_text_labels(a.train_labels)
    k = 1 + max(max(s) for s in truth + pred + train)
    if a.classifier:
        k = np.load(a.classifier).shape[0]

    def indicator(sets):
        y = np.zeros((len(sets), k), dtype=int)
        for i, s in enumerate(sets):
            y[i, s] = 1
        return y

    def scores(y, p):
        return {
            "f1_micro": metrics.f1_score(y, p, average="micro", zero_division=0),
            "f1_macro": metrics.f1_score(y, p, average="macro", zero_division=0),
            "f1_samples": metrics.f1_score(y, p, average="samples", zero_division=0),
            "subset_accuracy": metrics.accuracy_score(y, p),
            "hamming_loss": metrics.hamming_loss(y, p),
            "jaccard_samples": metrics.jaccard_score(y, p, average="samples", zero_division=0),
        }

    y, yp = indicator(truth), indicator(pred)
    failures = []

    def compare(where, expected, actual):
        for name, value in expected.items():
            if abs(value - actual[name]) > 1e-12:
                failures.append(f"{where} {name}: sklearn {value!r}, mlnc {actual[name]!r}")

    compare("overall", scores(y, yp), got)
    mult = np.array([len(s) for s in truth])
    for m in sorted(set(mult.tolist())):
        rows = mult == m
        compare(f"m={m}", scores(y[rows], yp[rows]), got["by_multiplicity"][str(m)])
    for f in failures:
        print("sklearn_check: MISMATCH " + f)
    if not failures:
        print(f"sklearn_check: all scores agree with scikit-learn {sklearn.__version__} "
              f"({len(truth)} samples, K = {k}, method {a.method})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Patient-level bootstrap of every headline metric, vectorised over resamples: seconds for a test set of --n
samples (two images per patient) and --resamples resamples, binary, 5-class and 14-label multi-label.

    python benchmarks/bootstrap.py --n 10000 --resamples 1000"""

from __future__ import annotations

import argparse
import time

import numpy as np

from radbench.data.base import Task, labels_to_targets
from radbench.report.stats import bootstrap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(args.n // 2 + 1), 2)[: args.n]
    cases = {"binary": (Task.BINARY, 2), "multiclass (5)": (Task.MULTICLASS, 5), "multilabel (14)": (Task.MULTILABEL, 14)}
    for name, (task, classes) in cases.items():
        if task is Task.MULTILABEL:
            targets = (rng.random((args.n, classes)) < 0.2).astype(np.float32)
            targets[rng.random(targets.shape) < 0.1] = np.nan
            scores = rng.random((args.n, classes))
        else:
            targets = labels_to_targets(task, rng.integers(0, classes, args.n), classes)
            scores = rng.random((args.n, classes)) + 0.3 * targets
            scores /= scores.sum(1, keepdims=True)
        start = time.perf_counter()
        intervals = bootstrap(task, targets, scores, patients, args.resamples, seed=0)
        seconds = time.perf_counter() - start
        auroc = intervals["auroc"]
        print(f"{name:<16} n={args.n} resamples={args.resamples}: {seconds:6.2f} s  "
              f"AUROC {auroc.estimate:.4f} [{auroc.low:.4f}, {auroc.high:.4f}], {len(intervals)} metrics")


if __name__ == "__main__":
    main()

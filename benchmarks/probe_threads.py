"""CPU seconds and wall time of the small-matrix probes with one maths-library thread per fit and with every
core (issue 40): the 45-value logistic-regression C grid, a kNN over a cached bank and a linear-probe step loop,
on synthetic features shaped like a study's (N train x D). Run on a quiet machine; with `--load K`, K busy
processes run beside it (the same figures under load).

    python benchmarks/probe_threads.py [--train 800] [--dim 192] [--load 0]"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from background_load import busy_processes


def logreg_grid(train, y, grid):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in grid:
            LogisticRegression(C=C, max_iter=1000).fit(x, y)


def logreg_side_by_side(train, y, grid, workers: int):
    """The grid's fits on `workers` threads at once, one maths thread each (what a `--fit-workers` option would do;
    measured slower than one at a time here, so radbench does not)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x = StandardScaler().fit_transform(train)
    with warnings.catch_warnings(), threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore", ConvergenceWarning)
        list(pool.map(lambda C: LogisticRegression(C=C, max_iter=1000).fit(x, y), grid))


def knn(train, queries):
    import torch

    bank = torch.nn.functional.normalize(torch.tensor(train), dim=1)
    for _ in range(20):
        (torch.nn.functional.normalize(torch.tensor(queries), dim=1) @ bank.T).topk(20, dim=1)


def linear(train, y):
    import torch

    x, target = torch.tensor(train), torch.tensor(y)
    head = torch.nn.Linear(x.shape[1], 2)
    optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(30):
        for start in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(head(x[start:start + 64]), target[start:start + 64])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


def measure(work, threads: int | None, repeats: int = 3):
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    best = None
    for _ in range(repeats):
        with threadpool_limits(limits=threads):
            torch.set_num_threads(threads or os.cpu_count())
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            figures = (time.perf_counter() - wall, time.process_time() - cpu)
        torch.set_num_threads(previous)
        best = figures if best is None or figures[1] < best[1] else best
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--load", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, args.train)
    train = (rng.standard_normal((args.train, args.dim)) + 0.05 * y[:, None]).astype(np.float32)  # overlapping: L-BFGS works
    grid = [float(c) for c in np.logspace(-6, 5, 45)]
    with busy_processes(args.load):
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start, {args.load} busy processes beside; "
              f"features {args.train} x {args.dim}")
        for name, work in [("logreg, 45 C values", lambda: logreg_grid(train, y, grid)),
                           ("knn, 20 x top-20 over the bank", lambda: knn(train, train)),
                           ("linear, 30 epochs of AdamW", lambda: linear(train, y))]:
            one = measure(work, 1)
            every = measure(work, None)
            print(f"{name:34s} one thread: {one[0]:6.2f} s wall {one[1]:6.2f} CPU-s | "
                  f"all {os.cpu_count()} threads: {every[0]:6.2f} s wall {every[1]:6.2f} CPU-s")
        cores = len(os.sched_getaffinity(0))
        runs = {workers: measure(lambda w=workers: logreg_side_by_side(train, y, grid, w), None)
                for workers in (1, cores)}
        print(f"{'logreg, 45 C values, threads':34s} one fit at a time: {runs[1][0]:6.2f} s wall "
              f"{runs[1][1]:6.2f} CPU-s | {cores} side by side: {runs[cores][0]:6.2f} s wall {runs[cores][1]:6.2f} CPU-s")


if __name__ == "__main__":
    main()

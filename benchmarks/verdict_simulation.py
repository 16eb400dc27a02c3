"""The leaderboard's verdicts and intervals on simulated studies with a known truth (radbench/report/simulation.py),
through the report's own ranking (report/leaderboard._rank): per number of runs, the share of studies in which two
backbones equal in expectation are called significantly different (false positives), the share in which a true
AUROC difference is found (power), and the share of 95 % intervals that cover each backbone's true AUROC.

    python benchmarks/verdict_simulation.py                     # 2000 studies per row, both cores
    python benchmarks/verdict_simulation.py --studies 500 --runs 3 5

Each share is printed with its binomial 95 % interval (Wilson)."""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one study per process: the processes fill the cores
os.environ.setdefault("OMP_NUM_THREADS", "1")


def wilson(share: float, count: int) -> tuple[float, float]:
    z = 1.959963984540054
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return centre - half, centre + half


def _one(arguments: tuple) -> dict:
    from radbench.report.simulation import Design, verdicts

    fields, studies, seed = arguments
    return verdicts(Design(**fields), studies, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per row")
    parser.add_argument("--runs", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--run-sd", type=float, default=0.03, help="run-to-run SD of a run's AUROC")
    parser.add_argument("--gap", type=float, default=0.05, help="the AUROC difference of the power rows")
    parser.add_argument("--rho", type=float, nargs="+", default=[0.0], help="correlation of same-seed runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    rows = [(kind, runs, rho) for rho in args.rho for runs in args.runs for kind in ("equal", "gap")]
    chunks = max(1, args.workers)
    started = time.perf_counter()
    print(f"{args.studies} studies per row; {args.patients} test patients, AUROC 0.80, run SD {args.run_sd}; "
          f"power rows: true difference {args.gap}")
    print(f"{'rows':<8}{'runs':>5}{'rho':>6}  {'significant (95 % CI)':<26}{'coverage (95 % CI)':<26}")
    with ProcessPoolExecutor(args.workers) as pool:
        for kind, runs, rho in rows:
            fields = {"runs": runs, "patients": args.patients, "run_sd": args.run_sd, "rho": rho,
                      "gap": 0.0 if kind == "equal" else args.gap}
            share = args.studies // chunks
            parts = list(pool.map(_one, [(fields, share, 1000 * index + runs) for index in range(chunks)]))
            count = share * chunks
            significant = sum(part["significant_right_way" if kind == "gap" else "significant"] for part in parts)
            significant /= chunks
            coverage = sum(part["coverage"] for part in parts) / chunks
            low, high = wilson(significant, count)
            cover_low, cover_high = wilson(coverage, 2 * count)
            print(f"{kind:<8}{runs:>5}{rho:>6.1f}  {significant:6.3f} ({low:.3f}-{high:.3f})      "
                  f"{coverage:6.3f} ({cover_low:.3f}-{cover_high:.3f})", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""Wall and CPU seconds of a study's probes once its features are cached (issue 40): the default protocols (linear
grid, kNN, logistic regression with its 45 C values) x seeds 0, 1, 2 on PneumoniaMNIST (1000 train, 524 val, 624
test) with a random ViT-Tiny at 64 px. The first run extracts into a shared cache; each timed run is a fresh
output folder reading that cache, so only planning and the protocols are timed. `--load K` runs K busy processes
beside it. To compare two versions, put the other on PYTHONPATH (e.g. a `git worktree` of an older commit).

    python benchmarks/cached_study.py [--data ../shared/data] [--load 0] [--repeats 2]"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from background_load import busy_processes
from child_time import timed


def study(data: Path, out: Path, cache: Path) -> dict:
    return {"name": "cached", "output_dir": str(out), "cache_dir": str(cache), "seeds": [0, 1, 2], "image_size": 64,
            "backbones": [{"name": "timm:vit_tiny_patch16_224", "weights": "none"}],
            "datasets": [{"name": "pneumonia", "adapter": "medmnist", "limit": {"train": 1000},
                          "path": str(data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}],
            "protocols": [{"linear": {}}, {"knn": {}}, {"logreg": {}}]}


def timed_run(path: Path) -> tuple[float, float]:
    return timed([sys.executable, "-m", "radbench", "run", str(path), "--quiet"])


def protocol_seconds(out: Path) -> dict[str, float]:
    """Seconds of protocol computation per protocol, summed over the jobs that computed (not those that took a
    seed-free result computed for another seed)."""
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("select protocol, timings, details from jobs").fetchall()
    totals: dict[str, float] = {}
    for protocol, timings, details in rows:
        computed = "computed_once" not in json.loads(details or "{}")
        totals[protocol] = totals.get(protocol, 0.0) + computed * json.loads(timings)["protocol_seconds"]
    return totals


def jobs_phase(out: Path) -> float:
    """Seconds from the run's first log line to its last job's line (what the protocols took, start-up aside)."""
    from datetime import datetime

    stamps = [datetime.fromisoformat(line.split()[0]) for line in (out / "run.log").read_text().splitlines()
              if line[:4].isdigit()]
    return (stamps[-1] - stamps[0]).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--load", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import radbench

    folder = Path(tempfile.mkdtemp(prefix="cached_study_"))
    cache = folder / "cache"
    first = folder / "warm.yaml"
    first.write_text(yaml.safe_dump(study(args.data, folder / "warm", cache)))
    subprocess.run([sys.executable, "-m", "radbench", "run", str(first), "--quiet"], check=True)
    with busy_processes(args.load):
        print(f"radbench from {Path(radbench.__file__).parent}; {os.cpu_count()} cores; {args.load} busy processes "
              f"beside; load average {os.getloadavg()[0]:.2f} at start")
        for repeat in range(args.repeats):
            out = folder / f"run{repeat}"
            path = folder / f"run{repeat}.yaml"
            path.write_text(yaml.safe_dump(study(args.data, out, cache)))
            wall, cpu = timed_run(path)
            per = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(protocol_seconds(out).items()))
            print(f"run {repeat}: {wall:.1f} s wall, {cpu:.1f} CPU-s, first to last log line {jobs_phase(out):.0f} s; "
                  f"protocols computing: {per}")


if __name__ == "__main__":
    main()

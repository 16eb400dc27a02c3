"""A newcomer's first hour, timed: how long `radbench plan` takes to name each kind of mistake (a wrong label column,
zero-shot on a backbone without a text tower, a LoRA target the backbone lacks, a misspelt protocol, a missing
data file), from process start to exit, on the shared data; and how true the time-left estimate is when a finished
study gains one protocol (the estimate printed after the first new job against the time the rest really took).

    python benchmarks/first_hour.py [--runs 3]"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NPZ = DATA / "medmnist" / "pneumoniamnist_kaggle_variant.npz"
NIH = DATA / "nih_chestxray14_images" / "labels.csv"


def study(folder: Path, **changes) -> dict:
    base = {"name": "first-hour", "output_dir": str(folder / "out"), "seeds": [0], "image_size": 32,
            "backbones": [{"name": "timm:test_vit", "weights": "none"}],
            "datasets": [{"name": "p", "adapter": "medmnist", "path": str(NPZ), "limit": 60}],
            "protocols": [{"knn": {"k": [3]}}]}
    return {**base, **changes}


MISTAKES = {
    "wrong label column": lambda f: study(f, datasets=[{"name": "nih", "adapter": "csv", "path": str(NIH),
                                                         "image_column": "Image Index", "label_columns": ["Efusion"]}]),
    "zero-shot without a text tower": lambda f: study(f, protocols=[{"zero_shot": {}}]),
    "LoRA target the backbone lacks": lambda f: study(f, protocols=[{"lora": {"epochs": 1,
                                                                               "target_modules": ["query"]}}]),
    "misspelt protocol": lambda f: study(f, protocols=["lienar"]),
    "missing data file": lambda f: study(f, datasets=[{"name": "p", "adapter": "medmnist",
                                                       "path": str(f / "nowhere.npz")}]),
}


def time_to_error(raw: dict, folder: Path, runs: int) -> tuple[float, float, str]:
    """(seconds of the first plan, with an empty user cache as on a new machine; median of the next `runs`, the
    cache then filled; the error line)."""
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    environment = {**os.environ, "XDG_CACHE_HOME": str(folder / "new-user-cache")}
    times, line = [], ""
    for _ in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "radbench", "plan", str(path)], capture_output=True, text=True,
                              env=environment)
        times.append(time.perf_counter() - start)
        line = next((x for x in done.stderr.splitlines() if x.startswith("error:")), f"exit {done.returncode}")
    return times[0], statistics.median(times[1:]), line


def eta_error(folder: Path) -> str:
    """Run a study, add one protocol, run again: the first time-left estimate against the rest's real time."""
    first = study(folder, seeds=[0, 1, 2], protocols=[{"knn": {"k": [3]}}],
                  datasets=[{"name": "p", "adapter": "medmnist", "path": str(NPZ), "limit": 1500}],
                  backbones=[{"name": "timm:test_vit", "weights": "none"},
                             {"name": "timm:test_vit2", "weights": "none"}])
    path = folder / "eta.yaml"
    path.write_text(yaml.safe_dump(first))
    subprocess.run([sys.executable, "-m", "radbench", "run", str(path), "-q"], check=True, capture_output=True)
    first["protocols"].append({"linear": {"epochs": 60, "lr": [0.001, 0.01, 0.1], "batch_size": 16}})
    path.write_text(yaml.safe_dump(first))
    process = subprocess.Popen([sys.executable, "-m", "radbench", "run", str(path)], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    estimate, marked = None, None
    for line in process.stderr:
        found = re.search(r"study: (\d+) of (\d+) jobs done .*about (?:(\d+)m)?(\d+)s left", line)
        if found and estimate is None:
            estimate = 60 * int(found.group(3) or 0) + int(found.group(4))
            marked = time.perf_counter()
    process.wait()
    if estimate is None:
        return "no time-left line"
    actual = time.perf_counter() - marked
    return (f"first estimate {estimate} s, the rest took {actual:.0f} s "
            f"({100 * (estimate - actual) / max(actual, 1e-9):+.0f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; `radbench plan` from start to exit: the first run "
          f"with an empty user cache (a new machine), then the median of {args.runs} more")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in MISTAKES.items():
            folder = Path(tmp) / name.replace(" ", "-")
            folder.mkdir()
            first, later, line = time_to_error(make(folder), folder, args.runs)
            print(f"{name:32} first {first:4.1f} s, then {later:4.1f} s  {line[:100]}")
        folder = Path(tmp) / "eta"
        folder.mkdir()
        print(f"time left after adding a protocol: {eta_error(folder)}")


if __name__ == "__main__":
    main()

"""The quickstart's cost, measured: `radbench quickstart --offline` on the shared PneumoniaMNIST file (600 images
through DINOv2 ViT-S/14 at 224 px, random weights — the same work as the online run, without the download), its
CPU time (user + system of every process it starts) and wall time, with the machine's cores and load beside them.
Writes radbench/quickstart_timing.json, which the quickstart's banner quotes and a test holds the README to.

    python benchmarks/quickstart_time.py [--data PATH]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child_time import timed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "medmnist" / "pneumoniamnist_kaggle_variant.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the timing file as it is")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "radbench", "quickstart", "--offline", "--data", str(args.data),
                   "--output-dir", str(Path(folder) / "quickstart"), "-q"]
        wall, cpu = timed(command, output=subprocess.DEVNULL)
    timing = {"cpu_minutes": round(cpu / 60, 2), "wall_minutes": round(wall / 60, 2), "cores": os.cpu_count(),
              "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
              "measured": time.strftime("%Y-%m-%d"), "command": "radbench quickstart --offline --data <npz>"}
    print(json.dumps(timing, indent=2))
    if not args.no_write:
        (ROOT / "radbench" / "quickstart_timing.json").write_text(json.dumps(timing, indent=2) + "\n")


if __name__ == "__main__":
    main()

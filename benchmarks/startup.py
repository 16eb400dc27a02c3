"""Start-up time of the CLI: `radbench --help`, `radbench list protocols` and a study with a config error,
next to the floor of `python -c "import yaml, pydantic"`; and how long `radbench run` of a real study (timm's
test_vit on the shared PneumoniaMNIST file) takes to print its first line. Median of 5 runs each, in seconds.

    python benchmarks/startup.py"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_line(command: list[str], runs: int = 5) -> float:
    """Seconds from start to the first line on stderr; the run is then stopped."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        process.stderr.readline()
        times.append(time.perf_counter() - start)
        process.kill()
        process.wait()
    return statistics.median(times)


def main() -> None:
    radbench = shutil.which("radbench") or f"{sys.executable} -m radbench"
    with tempfile.TemporaryDirectory() as folder:
        study = Path(folder) / "bad.yaml"
        study.write_text("name: s\noutput_dir: out\nbackbones: [{name: dinov2_vits14, weigths: none}]\n"
                         "datasets: [{name: d, adapter: medmnist, path: missing.npz}]\nprotocols: [knn]\n")
        rows = [
            ('python -c "import yaml, pydantic"', [sys.executable, "-c", "import yaml, pydantic"]),
            ("radbench --help", [*radbench.split(), "--help"]),
            ("radbench list protocols", [*radbench.split(), "list", "protocols"]),
            ("radbench run <study with config errors>", [*radbench.split(), "run", str(study)]),
            ('python -c "import torch, timm"', [sys.executable, "-c", "import torch, timm"]),
        ]
        for name, command in rows:
            print(f"{name:<45} {timed(command):6.3f} s")
        data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medmnist"
        real = Path(folder) / "real.yaml"
        real.write_text(f"name: r\noutput_dir: {folder}/out\nimage_size: 32\n"
                        "backbones: [{name: 'timm:test_vit', weights: none}]\n"
                        f"datasets: [{{name: p, adapter: medmnist, path: {data}/pneumoniamnist_kaggle_variant.npz}}]\n"
                        "protocols: [knn]\n")
        print(f"{'radbench run <study>: its first line':<45} {first_line([*radbench.split(), 'run', str(real)]):6.3f} s")


if __name__ == "__main__":
    main()

"""Wall time of `radbench report` on a study of 5 backbones x 3 datasets x 4 protocols x 3 seeds (180 jobs):
random-initialised timm test_vit variants (depth 1-5) at 32 px on PneumoniaMNIST, BreastMNIST and the NIH
ChestX-ray14 sample from ../shared/data, protocols kNN, linear, logistic regression and fine-tuning (1 epoch).
Prints the run time (not the subject), then the report's time with and without the PCA patch maps.

    python benchmarks/report.py [--out /tmp/radbench-report-bench] [--resamples 1000]"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def study(out: Path) -> dict:
    medmnist = DATA / "medmnist"
    return {
        "name": "report-bench", "output_dir": str(out), "seeds": [0, 1, 2], "image_size": 32, "batch_size": 256,
        "backbones": [{"name": "timm:test_vit", "weights": "none", "label": f"vit_depth{d}",
                       "model_kwargs": {"depth": d}} for d in range(1, 6)],
        "datasets": [
            {"name": "pneumonia", "adapter": "medmnist", "path": str(medmnist / "pneumoniamnist_kaggle_variant.npz"),
             "limit": 3000},
            {"name": "breast", "adapter": "medmnist", "path": str(medmnist / "breastmnist_resaved.npz")},
            {"name": "nih", "adapter": "csv", "path": str(DATA / "nih_chestxray14_images" / "labels.csv"),
             "image_column": "Image Index", "label_columns": ["Infiltration", "Effusion", "Atelectasis"],
             "patient_column": "Patient ID"}],
        "protocols": [{"knn": {"k": [10, 20]}}, {"linear": {"epochs": 5, "lr": [0.01, 0.1]}},
                      {"logreg": {"C": [0.1, 1.0]}}, {"finetune": {"epochs": 1, "lr": [1e-3]}}],
    }


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/radbench-report-bench"))
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "study.yaml"
    path.write_text(yaml.safe_dump(study(args.out / "out")))
    radbench = [sys.executable, "-m", "radbench"]
    print(f"run (180 jobs, once; resumes if already there): {timed([*radbench, 'run', str(path), '--quiet']):.1f} s")
    resamples = ["--resamples", str(args.resamples)]
    for label, extra in (("report", []), ("report --patch-images 0", ["--patch-images", "0"])):
        seconds = timed([*radbench, "report", str(args.out / "out"), *resamples, *extra])
        print(f"{label} ({args.resamples} resamples): {seconds:.1f} s")
    figures = list((args.out / "out" / "report" / "figures").glob("*.png"))
    print(f"figures: {len(figures)}; page: {(args.out / 'out' / 'report' / 'index.html').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

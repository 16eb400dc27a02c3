"""What external tests and a corruption sweep cost: PneumoniaMNIST (test split `--test` images) on timm's test_vit,
kNN + logistic regression. Runs the study three times into fresh folders — clean only, + external test on NIH's 87
images (`split: all`), + 7 corruptions x 5 severities — and prints the images extracted per split and the wall time.

    python benchmarks/generalisation.py [--test 300] [--image-size 64] [--backbone timm:vit_small_patch16_224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def study(folder: Path, test: int, size: int, external: bool, corruptions: bool, backbone: str) -> dict:
    source = {"name": "pneumonia", "adapter": "medmnist", "limit": {"train": 300, "val": 100, "test": test},
              "path": str(SHARED / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}
    datasets = [source]
    if external:
        source["external_tests"] = [{"dataset": "nih", "split": "all"}]
        datasets.append({"name": "nih", "adapter": "nih", "path": str(SHARED / "nih_chestxray14_labels"),
                         "images": str(SHARED / "nih_chestxray14_images"), "missing_images": "skip",
                         "external_only": True})
    if corruptions:
        source["corruptions"] = {}  # the default sweep: 7 kinds x 5 severities
    return {"name": "bench", "output_dir": str(folder / "out"), "image_size": size, "batch_size": 128,
            "backbones": [{"name": backbone, "weights": "none"}], "datasets": datasets,
            "protocols": [{"knn": {"k": [5, 20]}}, {"logreg": {"C": [0.1, 1.0]}}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="timm:test_vit")
    args = parser.parse_args()
    from radbench.config import study_from_mapping
    from radbench.progress import Reporter
    from radbench.runner import run_study

    for label, external, corruptions in (("clean only", False, False), ("+ external (NIH, split all)", True, False),
                                         ("+ 7 corruptions x 5 severities", False, True)):
        with tempfile.TemporaryDirectory() as folder:
            config = study_from_mapping(study(Path(folder), args.test, args.image_size, external, corruptions,
                                              args.backbone),
                                        Path(folder), "bench")
            start = time.perf_counter()
            summary = run_study(config, Reporter(quiet=True))
            seconds = time.perf_counter() - start
        by_set: dict[str, int] = {}
        extract_seconds = sum(extraction.seconds for extraction in summary.extractions)
        for extraction in summary.extractions:
            by_set[f"{extraction.dataset}/{extraction.split}"] = extraction.images
        shifted = {k: v for k, v in by_set.items() if "~" in k}
        print(f"{label}: {summary.jobs_run} jobs, {seconds:.1f} s wall ({extract_seconds:.1f} s extracting); "
              f"extractions: "
              f"{len(by_set)} splits, {sum(by_set.values())} images"
              + (f" ({len(shifted)} corrupted test splits of {next(iter(shifted.values()))} images; "
                 f"train/val extracted once: {[k for k in by_set if '~' not in k]})" if shifted else
                 f" {sorted(by_set)}"))


if __name__ == "__main__":
    main()

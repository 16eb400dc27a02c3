"""radbench's whole default study against kaiko-eva on the same images and backbone (issue 40), in interleaved pairs.

Images: `--images` (1000) PneumoniaMNIST images from the shared npz, written as 224 px PNGs with a CSV; radbench
splits them train / val / test 60 / 20 / 20 %, eva (which has no validation split in its offline configs) trains
on radbench's train + val and monitors its test split. Backbone: a random-initialised ViT-Tiny/16 at 224 px in both
(`timm:vit_tiny_patch16_224`, weights none; eva's `universal/vit_tiny_patch16_224_random`).
- radbench: `radbench run` of the default protocols (linear grid, kNN, logistic regression) x seeds 0, 1, 2,
  from a fresh output folder and feature cache each time (extraction included).
- eva: `eva predict_fit` with `N_RUNS=3`: one extraction, then three linear-head runs, with the settings of eva's
  offline binary classification configs (AdamW lr 3e-4, batch 256, up to 12 500 steps, early stopping on val
  balanced accuracy with patience 278) and its MHIST dataset class reading the same PNGs (its fixed-size check
  off).
Each pair runs both, the order alternating; wall and CPU seconds (user + system of the process tree) and the 1-min
load average are printed per run, then the medians and ratios. eva runs from its own virtual environment
(`--eva-python`), e.g. one made with `pip install "kaiko-eva[vision]==0.4.5" torch==2.14.1 torchvision==0.29.1
"jsonargparse[omegaconf]==4.31.0"` (the jsonargparse of eva's lock file: 4.53 cannot parse eva's HeadModule).

    python benchmarks/eva_study.py --eva-python /tmp/eva-venv/bin/python [--pairs 3] [--images 1000]"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from child_time import timed

NPZ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medmnist" / "pneumoniamnist_kaggle_variant.npz"

# eva's dataset for a folder of images: its MHIST class (annotations.csv with "Image Name", "Majority Vote Label",
# "Partition"; images/), without the check of MHIST's own image counts.
EVA_DATASET = '''
from eva.vision.data.datasets.classification.mhist import MHIST


class PngFolder(MHIST):
    def validate(self) -> None:
        pass
'''


def write_images(folder: Path, count: int) -> None:
    from PIL import Image

    arrays = np.load(NPZ)
    chosen = np.random.default_rng(0).permutation(sum(len(arrays[f"{s}_labels"]) for s in ("train", "val", "test")))
    images = np.concatenate([arrays["train_images"], arrays["val_images"], arrays["test_images"]])[chosen[:count]]
    labels = np.concatenate([arrays["train_labels"], arrays["val_labels"], arrays["test_labels"]])[chosen[:count], 0]
    tenths = np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    splits = np.random.default_rng(0).permutation(tenths[np.arange(count) % 10])
    (folder / "images").mkdir(parents=True)
    with open(folder / "radbench.csv", "w", newline="") as ours, \
            open(folder / "annotations.csv", "w", newline="") as eva:
        ours_rows, eva_rows = csv.writer(ours), csv.writer(eva)
        ours_rows.writerow(["path", "label", "split", "patient"])
        eva_rows.writerow(["Image Name", "Majority Vote Label", "Partition"])
        for index, (image, label, split) in enumerate(zip(images, labels, splits)):
            name = f"{index:05d}.png"
            Image.fromarray(image).resize((224, 224), Image.BILINEAR).save(folder / "images" / name)
            ours_rows.writerow([f"images/{name}", int(label), split, f"p{index}"])
            eva_rows.writerow([name, ["SSA", "HP"][int(label)], "test" if split == "test" else "train"])
    (folder / "eva_png.py").write_text(EVA_DATASET)


def radbench_study(folder: Path, run: str) -> Path:
    raw = {"name": "eva-pair", "output_dir": str(folder / run / "out"), "cache_dir": str(folder / run / "cache"),
           "seeds": [0, 1, 2], "image_size": 224,
           "backbones": [{"name": "timm:vit_tiny_patch16_224", "weights": "none"}],
           "datasets": [{"name": "pngs", "adapter": "csv", "path": str(folder / "radbench.csv"),
                         "label_columns": ["label"], "split_column": "split", "patient_column": "patient"}],
           "protocols": [{"linear": {}}, {"knn": {}}, {"logreg": {}}]}
    path = folder / f"{run}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def eva_config(folder: Path, run: str, max_steps: int) -> Path:
    root, embeddings = str(folder / run / "logs"), str(folder / run / "embeddings")
    backbone = {"class_path": "eva.vision.models.ModelFromRegistry",
                "init_args": {"model_name": "universal/vit_tiny_patch16_224_random"}}
    transforms = {"class_path": "eva.vision.data.transforms.common.ResizeAndCrop",
                  "init_args": {"size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    monitor = "val/BinaryBalancedAccuracy"
    embedded = {"class_path": "eva.datasets.EmbeddingsClassificationDataset",
                "init_args": {"root": embeddings, "manifest_file": "manifest.csv", "split": "train",
                              "target_transforms": {"class_path": "torchvision.transforms.v2.ToDtype",
                                                    "init_args": {"dtype": "torch.float32"}}}}
    config = {
        "trainer": {"class_path": "eva.Trainer", "init_args": {
            "n_runs": 3, "default_root_dir": root, "max_steps": max_steps, "checkpoint_type": "best",
            "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
            "logger": [{"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": root, "name": ""}}],
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"filename": "best", "save_top_k": 1, "monitor": monitor, "mode": "max"}},
                {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
                 "init_args": {"min_delta": 0, "patience": 278, "monitor": monitor, "mode": "max"}},
                {"class_path": "eva.callbacks.ClassificationEmbeddingsWriter",
                 "init_args": {"output_dir": embeddings, "dataloader_idx_map": {0: "train", 1: "test"},
                               "backbone": backbone, "overwrite": False}}]}},
        "model": {"class_path": "eva.HeadModule", "init_args": {
            "head": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 192, "out_features": 1}},
            "criterion": {"class_path": "torch.nn.BCEWithLogitsLoss"},
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.0003}},
            "metrics": {"common": [{"class_path": "eva.metrics.AverageLoss"},
                                   {"class_path": "eva.metrics.BinaryClassificationMetrics"}]}}},
        "data": {"class_path": "eva.DataModule", "init_args": {
            "datasets": {
                "train": embedded,
                "val": {**embedded, "init_args": {**embedded["init_args"], "split": "test"}},
                "predict": [{"class_path": "eva_png.PngFolder",
                             "init_args": {"root": str(folder), "split": split, "transforms": transforms}}
                            for split in ("train", "test")]},
            "dataloaders": {"train": {"batch_size": 256, "num_workers": os.cpu_count(), "shuffle": True},
                            "val": {"batch_size": 256, "num_workers": os.cpu_count()},
                            "predict": {"batch_size": 64, "num_workers": os.cpu_count()}}}},
    }
    path = folder / f"{run}-eva.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def timed_logged(command: list[str], log: Path, env: dict | None = None) -> tuple[float, float]:
    with open(log, "w") as output:
        return timed(command, env=env, output=output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eva-python", required=True, help="the Python of a virtual environment with kaiko-eva")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--eva-max-steps", type=int, default=12500, help="eva's head training cap (its default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    args = parser.parse_args()
    import radbench

    folder = Path(tempfile.mkdtemp(prefix="eva_study_"))
    write_images(folder, args.images)
    eva_env = {**os.environ, "PYTHONPATH": str(folder)}
    eva = Path(args.eva_python).with_name("eva")
    print(f"radbench from {Path(radbench.__file__).parent}; eva from {eva}; {os.cpu_count()} cores; "
          f"{args.images} PNGs; ViT-Tiny/16 random init at 224 px")
    times: dict[str, list[tuple[float, float]]] = {"radbench": [], "eva": []}
    for pair in range(args.pairs):
        order = ["radbench", "eva"] if pair % 2 == 0 else ["eva", "radbench"]
        for name in order:
            load = os.getloadavg()[0]
            run = f"{name}{pair}"
            if name == "radbench":
                wall, cpu = timed_logged([sys.executable, "-m", "radbench", "run", str(radbench_study(folder, run)),
                                          "--quiet"], folder / f"{run}.log")
            else:
                config = eva_config(folder, run, args.eva_max_steps)
                wall, cpu = timed_logged([str(eva), "predict_fit", "--config", str(config)], folder / f"{run}.log",
                                         env=eva_env)
            times[name].append((wall, cpu))
            print(f"pair {pair} {name:8}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s (load {load:.2f} before)")
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in times.items()}
    for name, (wall, cpu) in medians.items():
        print(f"median {name:8}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s")
    print(f"radbench / eva: wall {medians['radbench'][0] / medians['eva'][0]:.2f}, "
          f"CPU {medians['radbench'][1] / medians['eva'][1]:.2f}")
    if args.keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()

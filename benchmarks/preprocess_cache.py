"""Extraction throughput with and without the preprocessing cache, on >= 1000 real-size files.

Builds a folder of N links to the real full-size files in ../shared/data (NIH ChestX-ray14 PNGs at 1024^2;
DICOM radiographs/MR at 1024^2 to 1955x1841, JPEG 2000 compressed), then measures:
  raw decode      images/s of decoding alone (one process)
  no cache        extraction with decoding + resizing in the loop (DataLoader workers)
  cache, cold     building the uint8 cache (decode once) + extraction from it
  cache, warm     a second backbone at the same input size: extraction from the cache only

    python benchmarks/preprocess_cache.py --count 1000 --backbone timm:test_vit --image-size 224
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.config import parse_study
from radbench.data.readers import read_image
from radbench.progress import Reporter
from radbench.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = {
    "png": sorted((SHARED / "nih_chestxray14_images" / "full_size").glob("*.png")),
    "dicom": [SHARED / "dicom_samples" / "pydicom_data" / n for n in
              ("MR2_J2KI.dcm", "MR2_J2KR.dcm", "RG1_J2KI.dcm", "RG3_J2KI.dcm")],
}


def make_folder(kind: str, count: int, folder: Path) -> Path:
    sources = SOURCES[kind]
    rows = []
    for k in range(count):
        source = sources[k % len(sources)]
        link = folder / f"{k:05d}{source.suffix}"
        link.symlink_to(source)
        rows.append({"path": link.name, "label": k % 2, "patient": k})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def decode_rate(kind: str, seconds: float = 10.0) -> tuple[float, tuple]:
    count, start, shape = 0, time.perf_counter(), None
    while time.perf_counter() - start < seconds:
        shape = read_image(SOURCES[kind][count % len(SOURCES[kind])]).shape
        count += 1
    return count / (time.perf_counter() - start), shape


def study(csv: Path, output: Path, cache: str, args, label: str = "a") -> dict:
    return {
        "name": "bench", "output_dir": str(output), "image_size": args.image_size, "batch_size": args.batch_size,
        "preprocess_cache": cache, "num_workers": args.workers,
        "backbones": [{"name": args.backbone, "weights": "none", "label": label}],
        "datasets": [{"name": "d", "adapter": "csv", "path": str(csv), "label_columns": ["label"],
                      "patient_column": "patient", "split_fractions": [0.8, 0.1, 0.1]}],
        "protocols": [{"knn": {"k": [1]}}],
    }


def timed_extract(raw: dict) -> tuple[float, int]:
    config = parse_study(raw, base_dir=ROOT)
    start = time.perf_counter()
    summary = run_study(config, Reporter(quiet=True), extract_only=True)
    return time.perf_counter() - start, sum(e.images for e in summary.extractions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--backbone", default="timm:test_vit")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.workers} loader workers, backbone {args.backbone} at {args.image_size} px, "
          f"{args.count} files per kind")
    for kind in ("png", "dicom"):
        rate, shape = decode_rate(kind)
        print(f"[{kind}] raw decode: {rate:.1f} images/s (one process; e.g. {shape})")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "files").mkdir()
            csv = make_folder(kind, args.count, tmp / "files")
            seconds, images = timed_extract(study(csv, tmp / "off", "off", args))
            print(f"[{kind}] no cache:    {images / seconds:.1f} images/s ({images} images, {seconds:.1f} s)")
            seconds, images = timed_extract(study(csv, tmp / "on", "on", args))
            print(f"[{kind}] cache, cold: {images / seconds:.1f} images/s ({seconds:.1f} s, decode once + extract)")
            warm = study(csv, tmp / "on", "on", args, label="b")
            warm["backbones"][0]["mean"] = [0.45, 0.45, 0.45]  # another model, same input size
            seconds, images = timed_extract(warm)
            print(f"[{kind}] cache, warm: {images / seconds:.1f} images/s ({seconds:.1f} s, extraction only)")
            size = sum(f.stat().st_size for f in (tmp / "on" / "features" / "preprocessed").rglob("*.npy"))
            print(f"[{kind}] cache size: {size / 2**20:.1f} MiB for {args.count} images ({np.dtype('uint8').name})")


if __name__ == "__main__":
    main()

"""The first pass over raw files: decoding and resizing large PNGs into the preprocessing cache. One process's
decode + resize rate (the same per-image work, in a plain loop), then radbench's `build_split` with 1..N workers:
images/s and the share of (cores x one process's rate) it reaches. Synthetic 1024 x 1024 8-bit radiograph-like
PNGs (smooth structure plus noise, so they compress like real ones).

    python benchmarks/first_pass.py [--count 96] [--size 1024] [--image-size 224]"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_pngs(folder: Path, count: int, size: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    paths = []
    for k in range(count):
        body = 120 + 80 * np.sin(6 * x + k) * np.cos(4 * y) + rng.normal(0, 12, (size, size))
        path = folder / f"img{k:04d}.png"
        Image.fromarray(np.clip(body, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def main() -> None:
    from radbench.data.base import FileImages
    from radbench.data.precache import _Decode, build_split
    from radbench.data.transforms import Preprocess
    from radbench.features.extract import default_workers_for_files
    from radbench.progress import Reporter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    preprocess = Preprocess(args.image_size, "resize", (0.5,) * 3, (0.5,) * 3, "bicubic", quantize="uint8")
    with tempfile.TemporaryDirectory() as folder:
        images = FileImages(tuple(synthetic_pngs(Path(folder), args.count, args.size)))
        print(f"{args.count} PNGs of {args.size}² px -> {args.image_size} px; {cores} cores; load "
              f"{os.getloadavg()[0]:.1f}")
        decode = _Decode(images, preprocess, "uint8")
        start = time.perf_counter()
        for index in range(len(images)):
            decode[index]
        single = len(images) / (time.perf_counter() - start)
        print(f"one process, plain loop: {single:.1f} img/s; cores x that: {cores * single:.1f} img/s")
        for workers in sorted({1, default_workers_for_files(), cores}):
            target = Path(folder) / f"cache{workers}.npy"
            start = time.perf_counter()
            build_split(images, preprocess, target, "uint8", workers, Reporter(quiet=True), "bench")
            rate = len(images) / (time.perf_counter() - start)
            print(f"build_split, {workers} worker(s): {rate:.1f} img/s = {100 * rate / (cores * single):.0f} % of "
                  f"cores x one process")


if __name__ == "__main__":
    main()

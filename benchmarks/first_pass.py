"""The first pass over raw files: decoding and resizing large PNGs into the preprocessing cache. One process's
decode + resize rate (the same per-image work, in a plain loop), then radbench's `build_split` with 1..N workers:
images/s and the share of (cores x one process's rate) it reaches. Synthetic 1024 x 1024 8-bit radiograph-like
PNGs (smooth structure plus noise, so they compress like real ones).

Each round measures the plain loop and every worker count once, in turn; the medians over `--rounds` are
printed (this machine's speed drifts between runs, and the first read of fresh files is not the others').

    python benchmarks/first_pass.py [--count 96] [--size 1024] [--image-size 224] [--rounds 3]"""

from __future__ import annotations

import argparse
import os
import statistics
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


_DECODE = None  # set before the loops' processes fork: they inherit it, nothing is pickled


def _plain_loop(indices: range) -> int:
    for index in indices:
        _DECODE[index]
    return len(indices)


def side_by_side_loops(decode, count: int, cores: int) -> float:
    """img/s of `cores` independent processes each running the plain loop over its share: what the hardware gives
    when nothing is shared (two vCPUs may be one physical core's two threads), the ceiling for any worker scheme."""
    global _DECODE
    _DECODE = decode
    processes = []
    start = time.perf_counter()
    for k in range(cores):
        pid = os.fork()
        if pid == 0:  # the child: its share, then out without Python's exit handlers
            import torch

            torch.set_num_threads(1)  # as a DataLoader worker does: the parent's OpenMP pool does not survive fork
            _plain_loop(range(k, count, cores))
            os._exit(0)
        processes.append(pid)
    for pid in processes:
        os.waitpid(pid, 0)
    return count / (time.perf_counter() - start)


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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    preprocess = Preprocess(args.image_size, "resize", (0.5,) * 3, (0.5,) * 3, "bicubic", quantize="uint8")
    with tempfile.TemporaryDirectory() as folder:
        images = FileImages(tuple(synthetic_pngs(Path(folder), args.count, args.size)))
        print(f"{args.count} PNGs of {args.size}² px -> {args.image_size} px; {cores} cores; load "
              f"{os.getloadavg()[0]:.1f}")
        decode = _Decode(images, preprocess, "uint8")
        counts = sorted({1, default_workers_for_files(), cores})
        rates: dict[object, list[float]] = {"loop": [], "loops": [], **{w: [] for w in counts}}
        for _ in range(args.rounds):
            start = time.perf_counter()
            for index in range(len(images)):
                decode[index]
            rates["loop"].append(len(images) / (time.perf_counter() - start))
            rates["loops"].append(side_by_side_loops(decode, len(images), cores))
            for workers in counts:
                target = Path(folder) / f"cache{workers}.npy"
                start = time.perf_counter()
                build_split(images, preprocess, target, "uint8", workers, Reporter(quiet=True), "bench")
                rates[workers].append(len(images) / (time.perf_counter() - start))
        single = statistics.median(rates["loop"])
        print(f"one process, plain loop: {single:.1f} img/s (rounds: {', '.join(f'{r:.0f}' for r in rates['loop'])}); "
              f"cores x that: {cores * single:.1f} img/s")
        loops = statistics.median(rates["loops"])
        print(f"{cores} plain loops side by side (separate processes, nothing shared): {loops:.1f} img/s = "
              f"{100 * loops / (cores * single):.0f} % of cores x one process: the hardware's ceiling here")
        for workers in counts:
            rate = statistics.median(rates[workers])
            print(f"build_split, {workers} worker(s): {rate:.1f} img/s (rounds: "
                  f"{', '.join(f'{r:.0f}' for r in rates[workers])}) = {100 * rate / (cores * single):.0f} % of "
                  f"cores x one process, {100 * rate / loops:.0f} % of the side-by-side loops")


if __name__ == "__main__":
    main()

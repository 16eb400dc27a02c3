"""Extraction at the speed of the model? radbench's `extract_bundle` images/s next to the bare model's forward pass
(same model, batch size, precision, memory format), for images read from the preprocessing cache and decoded
from PNG, JPEG and DICOM files (links to the real full-size files in ../shared/data), with the DataLoader
settings used. On CUDA: bf16 autocast, channels-last for CNNs, optional torch.compile of the model.

    python benchmarks/extraction.py [--backbone timm:vit_small_patch16_224] [--count 256] [--batch-size 64]
        [--device auto] [--precision auto] [--compile] [--workers N]"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from radbench.backbones import BackboneConfig, build_backbone, describe_backbone
from radbench.data.base import FileImages
from radbench.data.precache import PrecachedImages, build_split
from radbench.data.transforms import Preprocess
from radbench.device import autocast, effective_precision, resolve_device
from radbench.features.extract import default_workers, extract_bundle
from radbench.progress import Reporter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DICOM = [SHARED / "dicom_samples" / "pydicom_data" / n for n in ("MR2_J2KI.dcm", "RG1_J2KI.dcm", "RG3_J2KI.dcm")]


def files(kind: str, count: int, folder: Path) -> FileImages:
    pngs = sorted((SHARED / "nih_chestxray14_images" / "full_size").glob("*.png"))
    if kind == "jpeg":
        from PIL import Image

        sources = []
        for png in pngs:
            target = folder / f"{png.stem}.jpg"
            Image.open(png).convert("L").save(target, quality=90)
            sources.append(target)
    else:
        sources = pngs if kind == "png" else DICOM
    paths = []
    for k in range(count):
        link = folder / f"{kind}{k:05d}{sources[k % len(sources)].suffix}"
        link.symlink_to(sources[k % len(sources)])
        paths.append(link)
    return FileImages(tuple(paths))


@torch.inference_mode()
def ceiling(backbone, layout, size: int, batch: int, count: int, device, precision: str) -> float:
    # a normalised radiograph-like batch (uniform [0, 1] images, ImageNet-normalised), not N(0, 1) noise
    images = (torch.rand(batch, 3, size, size, device=device) - 0.45) / 0.225
    if device.type == "cuda" and backbone.layout_kind == "pooled":
        images = images.contiguous(memory_format=torch.channels_last)
    for _ in range(2):  # warm-up (and compilation)
        with autocast(device, precision):
            backbone.forward_bundle(images, layout)
    _sync(device)
    start = time.perf_counter()
    done = 0
    while done < count:
        with autocast(device, precision):
            backbone.forward_bundle(images, layout).float().cpu()
        done += batch
    _sync(device)
    return done / (time.perf_counter() - start)


def matmul_peak(device, seconds: float = 2.0, n: int = 2048) -> float:
    """This device's practical fp32 peak: GFLOP/s of a large square matrix product (what a forward pass can reach
    at best; the vendor's peak is higher still)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    _sync(device)
    return 2 * n ** 3 * runs / (time.perf_counter() - start) / 1e9


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_extract(backbone, layout, images, preprocess, device, precision, batch, workers) -> float:
    start = time.perf_counter()
    extract_bundle(backbone, layout, images, preprocess, device=device, precision=precision, batch_size=batch,
                   num_workers=workers, reporter=Reporter(quiet=True), description="bench")
    _sync(device)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="timm:vit_small_patch16_224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="file decoding workers (default: radbench's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    parser.add_argument("--sources", default="cache,png,jpeg,dicom")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision = effective_precision(device, args.precision)
    cfg = BackboneConfig(name=args.backbone, weights="none")
    backbone = build_backbone(cfg, args.image_size)
    backbone.model.to(device)
    if args.compile:
        backbone.model = torch.compile(backbone.model)
    layout = backbone.layout(1)
    norm = describe_backbone(cfg).normalisation
    preprocess = Preprocess(args.image_size, "resize", norm.mean, norm.std, norm.interpolation)
    def forward_rate() -> float:
        return ceiling(backbone, layout, args.image_size, args.batch_size, args.count, device, precision)

    print(f"{args.backbone} at {args.image_size} px, batch {args.batch_size}, {device} {precision}"
          f"{', compiled' if args.compile else ''}; {os.cpu_count()} CPUs; {args.count} images per source; "
          f"load {os.getloadavg()[0]:.1f}")
    from radbench.backbones.architecture import architecture

    found = architecture(cfg, args.image_size)
    if found is not None and found.flops_per_image:
        peak, forward = matmul_peak(device), forward_rate()
        achieved = found.flops_per_image * forward / 1e9
        print(f"forward pass: {found.flops_per_image / 1e9:.2f} GFLOP/image x {forward:.1f} img/s = {achieved:.0f} "
              f"GFLOP/s, {100 * achieved / peak:.0f} % of this device's fp32 matmul peak ({peak:.0f} GFLOP/s, "
              "torch.mm 2048 x 2048)")
    print(f"{'source':8} {'loader':26} {'img/s':>8} {'forward':>8} {'of forward':>11}   (median of {args.rounds} "
          "alternating rounds: this machine's speed drifts)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in args.sources.split(","):
            folder = tmp / kind
            folder.mkdir()
            if kind == "cache":
                source = files("png", args.count, folder)
                build_split(source, preprocess, folder / "cache.npy", "uint8", default_workers(source),
                            Reporter(quiet=True), "cache")
                images = PrecachedImages(folder / "cache.npy", np.arange(args.count))
                used = replace_quantized(preprocess)
            else:
                images, used = files(kind, args.count, folder), preprocess
            workers = default_workers(images) if args.workers is None or kind == "cache" else args.workers
            pairs = []
            for _ in range(args.rounds if kind == "cache" else 1):
                top = forward_rate()
                rate = timed_extract(backbone, layout, images, used, device, precision, args.batch_size,
                                     args.workers if kind != "cache" else None)
                pairs.append((rate / top, rate, top))
            share, rate, top = sorted(pairs)[len(pairs) // 2]
            loader = "uint8 batches" if kind == "cache" else f"{workers} decoding workers"
            print(f"{kind:8} {loader:26} {rate:8.1f} {top:8.1f} {100 * share:10.0f}%")


def replace_quantized(preprocess: Preprocess) -> Preprocess:
    from dataclasses import replace

    return replace(preprocess, quantize="uint8")


if __name__ == "__main__":
    main()

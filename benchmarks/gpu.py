"""radbench's GPU path in one command, for the first machine with an accelerator: extraction images/s against the
bare forward pass in fp32 and bf16 autocast (channels-last for CNNs), optionally torch.compile'd, from a
preprocessing cache through pinned memory and non-blocking copies; the forward pass against the GPU's measured
matmul peak; and DDP scaling (the same images split over 1..N GPUs with torchrun). `--dry` runs every code path on
the CPU with a tiny model and a handful of images (the tests do), so the script is known to work before a GPU
is at hand.

    python benchmarks/gpu.py [--backbone timm:vit_small_patch14_dinov2] [--count 2048] [--compile] [--ddp]
    python benchmarks/gpu.py --dry"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extraction import ceiling, matmul_peak, timed_extract  # noqa: E402  (the CPU benchmark's measurements)

from radbench.backbones import BackboneConfig, build_backbone, describe_backbone  # noqa: E402
from radbench.data.precache import PrecachedImages  # noqa: E402
from radbench.data.transforms import Preprocess  # noqa: E402


def synthetic_cache(folder: Path, count: int, size: int) -> PrecachedImages:
    """A uint8 preprocessing cache (images at input size), as `radbench run` writes it for file datasets."""
    rng = np.random.default_rng(0)
    path = folder / "cache.npy"
    np.save(path, rng.integers(0, 255, (count, size, size), dtype=np.uint8))  # grey, as radiographs are cached
    return PrecachedImages(path, np.arange(count))


def measure(args, device) -> list[dict]:
    """One row per precision: forward img/s, extraction img/s and their ratio, GFLOP/s against the matmul peak."""
    from radbench.backbones.architecture import architecture

    cfg = BackboneConfig(name=args.backbone, weights="none")
    backbone = build_backbone(cfg, args.image_size)
    backbone.model.to(device).eval()
    if device.type == "cuda" and backbone.layout_kind == "pooled":
        backbone.model = backbone.model.to(memory_format=torch.channels_last)  # CNNs: channels-last kernels
    if args.compile:
        backbone.model = torch.compile(backbone.model)
    layout = backbone.layout(1)
    norm = describe_backbone(cfg).normalisation
    preprocess = Preprocess(args.image_size, "resize", norm.mean, norm.std, norm.interpolation, quantize="uint8")
    found = architecture(cfg, args.image_size)
    flops = found.flops_per_image if found is not None else None
    peak = matmul_peak(device, seconds=0.2 if args.dry else 2.0, n=256 if args.dry else 4096)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        images = synthetic_cache(Path(folder), args.count, args.image_size)
        for precision in args.precisions.split(","):
            forward = ceiling(backbone, layout, args.image_size, args.batch_size, args.count, device, precision)
            extract = timed_extract(backbone, layout, images, preprocess, device, precision, args.batch_size, None)
            rows.append({"precision": precision, "forward_img_s": round(forward, 1), "extract_img_s": round(extract, 1),
                         "of_forward": round(extract / forward, 3),
                         "gflop_per_image": None if flops is None else round(flops / 1e9, 3),
                         "of_fp32_matmul_peak": None if flops is None else round(flops * forward / 1e9 / peak, 3),
                         "matmul_peak_gflop_s": round(peak, 1)})
    return rows


def ddp_worker(args) -> None:
    """Under torchrun: this rank's share of the images, timed between barriers; rank 0 prints the whole rate."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    cfg = BackboneConfig(name=args.backbone, weights="none")
    backbone = build_backbone(cfg, args.image_size)
    backbone.model.to(device).eval()
    layout = backbone.layout(1)
    norm = describe_backbone(cfg).normalisation
    preprocess = Preprocess(args.image_size, "resize", norm.mean, norm.std, norm.interpolation, quantize="uint8")
    with tempfile.TemporaryDirectory() as folder:
        images = synthetic_cache(Path(folder), args.count // world, args.image_size)
        timed_extract(backbone, layout, images, preprocess, device, args.precisions.split(",")[0], args.batch_size,
                      None)  # warm-up
        dist.barrier()
        start = time.perf_counter()
        timed_extract(backbone, layout, images, preprocess, device, args.precisions.split(",")[0], args.batch_size,
                      None)
        dist.barrier()
        seconds = time.perf_counter() - start
    if rank == 0:
        print(json.dumps({"world": world, "img_s": round(world * (args.count // world) / seconds, 1)}))
    dist.destroy_process_group()


def ddp_scaling(args) -> list[dict]:
    """Images/s with the images split over 1, 2, 4, 8 GPUs (as many as there are; a dry run: 2 CPU processes)."""
    gpus = 2 if args.dry else torch.cuda.device_count()
    rows = []
    for world in [n for n in (1, 2, 4, 8) if n <= gpus]:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                   "--master_port", str(29500 + world + (100 if args.dry else 0)), __file__, "--worker",
                   "--backbone", args.backbone, "--count", str(args.count), "--batch-size", str(args.batch_size),
                   "--image-size", str(args.image_size), "--precisions", args.precisions.split(",")[0]]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        rows.append(json.loads(lines[-1]) if lines else {"world": world, "error": done.stderr[-300:]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="timm:vit_small_patch14_dinov2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--count", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--ddp", action="store_true", help="also DDP scaling over 1..N GPUs (torchrun)")
    parser.add_argument("--dry", action="store_true", help="every code path on the CPU, tiny and fast (tests)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return ddp_worker(args)
    if args.dry:
        args.backbone, args.image_size, args.count, args.batch_size = "timm:test_vit", 32, 16, 8
        args.precisions = "fp32"
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry else "cpu")
    if device.type != "cuda" and not args.dry:
        sys.exit("benchmarks/gpu.py: no CUDA device here; --dry runs its code paths on the CPU")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run: not a measurement)"
    print(json.dumps({"device": name, "backbone": args.backbone, "image_size": args.image_size, "count": args.count,
                      "batch_size": args.batch_size, "compile": args.compile}))
    for row in measure(args, device):
        print(json.dumps(row))
    if args.ddp:
        for row in ddp_scaling(args):
            print(json.dumps({"ddp": row}))


if __name__ == "__main__":
    main()

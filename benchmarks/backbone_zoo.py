"""Every named backbone at its native resolution (or --size): parameters, GFLOPs per image (torch's flop
counter), CPU (or --device) images/s at batch 8, and peak memory. Random-init weights: the numbers are the
architecture's, not the weights'.

    python benchmarks/backbone_zoo.py                       # all entries (SAM at 1024 px takes minutes on a CPU)
    python benchmarks/backbone_zoo.py --only dinov2_vits14 sam_vitb --size 224
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from radbench.backbones import BACKBONES, BackboneConfig, build_backbone


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak: grows monotonically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="entry names (default: all)")
    parser.add_argument("--size", type=int, help="input size instead of each entry's native one")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="timed batches after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = args.only or list(BACKBONES)
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'name':<24}{'params M':>10}{'size':>6}{'GFLOPs':>10}{'img/s':>9}{'peak MiB':>10}")
    for name in names:
        entry = BACKBONES.get(name)
        size = args.size or entry.native
        if entry.patch and size % entry.patch:
            size -= size % entry.patch
        backbone = build_backbone(BackboneConfig(name=name, weights="none"), size)
        model = backbone.model.to(device).eval()
        layout = backbone.layout(1)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        images = torch.rand(args.batch, 3, size, size, device=device)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as counter:
                backbone.forward_bundle(images[:1], layout)
            gflops = counter.get_total_flops() / 1e9
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            backbone.forward_bundle(images, layout)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.repeats):
                backbone.forward_bundle(images, layout)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rate = args.batch * args.repeats / (time.perf_counter() - start)
        print(f"{name:<24}{params:>10.1f}{size:>6}{gflops:>10.1f}{rate:>9.1f}{peak_mb(device):>10.0f}", flush=True)
        del backbone, model, images
        gc.collect()


if __name__ == "__main__":
    main()

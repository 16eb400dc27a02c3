"""Per-step time and peak memory of full fine-tuning vs LoRA vs BitFit on the same backbone and batch.

Each mode runs in its own process so that its peak memory is its own: on CUDA the peak allocated by tensors,
on CPU the process's peak resident memory (reported with the resident memory after building the model, so
the training overhead can be read off). Prints one line per mode.

    python benchmarks/adaptation_cost.py --backbone dinov2_vits14 --image-size 112 --batch-size 16 --steps 6
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODES = ("finetune", "lora", "bitfit")


def measure(args) -> dict:
    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.device import resolve_device
    from radbench.training.models import apply_bitfit, apply_lora, fresh_classifier, optimizer_groups, parameter_counts

    device = resolve_device(args.device)
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=args.backbone, weights="none"), args.image_size)
    model = fresh_classifier(backbone, 14)
    if args.mode == "lora":
        apply_lora(model, rank=8, alpha=16, dropout=0.1, targets=["qkv"])
    elif args.mode == "bitfit":
        apply_bitfit(model)
    model.to(device)
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.AdamW(optimizer_groups(model.trunk, model.head, 1e-4, 1e-3, 0.05, 1.0))
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    targets = torch.randint(0, 14, (args.batch_size,), device=device)
    resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.steps + 1):  # the first step warms up and is not timed
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"mode": args.mode, "trainable": trainable, "total": total, "step_s": statistics.median(times),
            "peak_mb": peak, "resident_after_build_mb": resident_before, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="dinov2_vits14")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", choices=MODES)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args)))
        return
    print(f"{args.backbone} (random init) at {args.image_size} px, batch {args.batch_size}, median of {args.steps} steps")
    for mode in MODES:
        command = [sys.executable, __file__, "--mode", mode, "--backbone", args.backbone, "--image-size",
                   str(args.image_size), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--device", args.device]
        out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(f"{mode:9s} {out['device']}: {out['step_s'] * 1000:8.1f} ms/step, peak {out['peak_mb']:8.1f} MiB "
              f"(after build {out['resident_after_build_mb']:.1f}), trainable {out['trainable']:,} of {out['total']:,} "
              f"({100 * out['trainable'] / out['total']:.2f} %)")


if __name__ == "__main__":
    main()

"""Segmentation decoders: epoch time of the frozen linear decoder with cached feature maps vs recomputing the
backbone every epoch, and peak memory of a U-Net decoder training step at 224 and 448 px.

Uses the real Shenzhen CXRs + lung masks (../shared/data), each listed `--repeat` times to make an epoch long
enough to time. Peak memory: CUDA peak allocated when a GPU is used, else the process's peak resident memory
(each size in its own process, with the resident memory after building the model for reference).

    python benchmarks/segmentation_decoders.py --backbone dinov2_vits14 --repeat 6
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHENZHEN = ROOT.parent / "shared" / "data" / "cxr_lung_seg_shenzhen"


def make_folder(folder: Path, repeat: int) -> Path:
    for kind, suffix in (("train_images", ""), ("train_masks", "_mask")):
        (folder / kind).mkdir(parents=True)
        for image in sorted((SHENZHEN / kind).glob("*.png")):
            stem = image.stem.removesuffix("_mask")
            for r in range(repeat):
                (folder / kind / f"{stem}r{r}{suffix}.png").symlink_to(image)
    return folder


def epoch_times(args) -> None:
    from radbench.config import parse_study
    from radbench.progress import Reporter
    from radbench.results import ResultsStore
    from radbench.runner import run_study

    with tempfile.TemporaryDirectory() as tmp:
        data = make_folder(Path(tmp) / "data", args.repeat)
        for label, budget in (("cached feature maps", 8.0), ("backbone every epoch", 0.0)):
            out = Path(tmp) / label.replace(" ", "_")
            raw = {"name": "bench", "output_dir": str(out), "image_size": 224,
                   "backbones": [{"name": args.backbone, "weights": "none"}],
                   "datasets": [{"name": "lungs", "adapter": "mask_folder", "path": str(data), "images": "train_images",
                                 "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
                                 "patient_regex": r"^(CHNCXR_\d+)", "split_fractions": [0.6, 0.2, 0.2]}],
                   "protocols": [{"segmentation": {"decoder": "linear", "epochs": args.epochs, "lr": [0.01],
                                                   "batch_size": 8, "feature_cache_gb": budget, "refit": False,
                                                   "overlays": 0}}]}
            start = time.perf_counter()
            run_study(parse_study(raw, ROOT), Reporter(quiet=True))
            total = time.perf_counter() - start
            job = ResultsStore(out / "results.sqlite").jobs().iloc[0]
            history = json.loads(job["candidates"])[0]["history"]
            train = sorted(h["train_seconds"] for h in history)
            print(f"linear decoder, {label}: median {train[len(train) // 2]:.2f} s per training epoch "
                  f"(first {history[0]['train_seconds']:.2f} s; val {history[0]['val_seconds']:.2f} s per epoch; "
                  f"{args.epochs} epochs; whole job {total:.1f} s including the one-time cache)")
            shutil.rmtree(out)


def unet_peak(args) -> dict:
    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.device import resolve_device
    from radbench.segmentation.decoders import Segmenter, UNetDecoder, dense_taps, dice_ce_loss, tap_indices

    device = resolve_device(args.device)
    backbone = build_backbone(BackboneConfig(name=args.backbone, weights="none"), args.size)
    indices = tap_indices(backbone.model, 4)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    masks = torch.randint(0, 2, (args.batch, args.size, args.size), device=device)
    backbone.model.to(device)
    channels = [t.shape[1] for t in dense_taps(backbone.model, images[:1], indices)]
    model = Segmenter(backbone.model, UNetDecoder(channels, 2), indices, train_backbone=False).to(device)
    optimizer = torch.optim.AdamW(model.decoder.parameters(), lr=1e-3)
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(2):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = dice_ce_loss(model(images).float(), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step = (time.perf_counter() - start) / 2
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"size": args.size, "peak_mb": peak, "resident_after_build_mb": resident, "step_s": step,
            "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="dinov2_vits14")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    if args.size:
        print(json.dumps(unet_peak(args)))
        return
    print(f"{args.backbone} (random init), Shenzhen x{args.repeat} = {10 * args.repeat} images")
    epoch_times(args)
    for size in (224, 448):
        command = [sys.executable, __file__, "--backbone", args.backbone, "--size", str(size), "--batch",
                   str(args.batch), "--device", args.device]
        out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(f"U-Net decoder step at {size} px, batch {args.batch} ({out['device']}): peak {out['peak_mb']:.0f} MiB "
              f"(after build {out['resident_after_build_mb']:.0f} MiB), {out['step_s']:.2f} s/step")


if __name__ == "__main__":
    main()

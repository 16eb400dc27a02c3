"""DINO-CXR's claim, measured: fixed-size views (N global views) against DINO's multi-crop (2 global + M local)
on the same backbone and batch. Per mode, in a process of its own: the training step's time and images/s (the
real `train_step`: teacher forward, student forward + backward, AdamW, momentum update), the peak memory (CUDA:
max allocated; CPU: the process's peak RSS) and the views' generation time per image on one CPU core.

    python benchmarks/pretrain_views.py [--backbone timm:vit_small_patch16_224] [--batch-size 16] [--steps 5]
        [--method dino|dinov2] [--device auto] [--precision auto]"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODES = {"fixed": {"views": "fixed", "global_views": 2},
         "multicrop": {"views": "multicrop", "global_views": 2}}


def measure(args: argparse.Namespace, mode: str) -> dict:
    import torch

    from radbench.distributed import Ranks
    from radbench.pretrain.config import parse_pretrain
    from radbench.pretrain.data import Schedule
    from radbench.pretrain.loop import Trainee, make_optimizer, scheduled, train_step
    from radbench.pretrain.model import build_networks
    from radbench.pretrain.objective import Objective
    from radbench.pretrain.views import ViewMaker

    raw = {"name": "bench", "output_dir": "/tmp/radbench-pretrain-bench",
           "backbone": {"name": args.backbone, "weights": "none"},
           "data": [{"adapter": "folder", "path": str(DATA / "nih_chestxray14_images")}],
           "method": args.method, "image_size": args.image_size, "local_views": args.local_views,
           "local_size": args.local_size, "batch_size": args.batch_size, "epochs": 100,
           "device": args.device, "precision": args.precision, **MODES[mode]}
    cfg = parse_pretrain(raw, ROOT).config
    place = Ranks.from_env(cfg.device)
    from radbench.device import effective_precision

    precision = effective_precision(place.device, cfg.precision)
    student, teacher = build_networks(cfg)
    student.to(place.device)
    teacher.to(place.device)
    trainee = Trainee(student, teacher, Objective(cfg).to(place.device), make_optimizer(student, place.device), place)
    schedule = Schedule(10_000, cfg.batch_size, cfg.epochs, 0)

    maker = ViewMaker.from_config(cfg, (0.5,) * 3, (0.25,) * 3)
    torch.set_num_threads(1)
    image = torch.rand(1, cfg.image_size, cfg.image_size)
    start = time.perf_counter()
    samples = [maker(image, seed) for seed in range(args.view_samples)]
    view_ms = (time.perf_counter() - start) / args.view_samples * 1000
    torch.set_num_threads(args.threads)
    batch = [torch.stack([s[v] for s in (samples * (cfg.batch_size // len(samples) + 1))[:cfg.batch_size]])
             for v in range(len(samples[0]))]

    cuda = place.device.type == "cuda"
    times = []
    for step in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        train_step(cfg, trainee, batch, step + 100, scheduled(cfg, step + 100, schedule), precision)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    step_s = sum(times[args.warmup:]) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_global, n_local = cfg.n_views()
    return {"mode": mode, "views": f"{n_global}x{cfg.image_size}" + (f" + {n_local}x{cfg.local_size}" if n_local else ""),
            "device": str(place.device), "precision": precision, "batch": cfg.batch_size, "step_s": step_s,
            "images_per_s": cfg.batch_size / step_s, "peak_mib": peak, "peak_kind": "cuda max allocated" if cuda
            else "process peak RSS", "view_ms_per_image": view_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="timm:vit_small_patch16_224")
    parser.add_argument("--method", default="dino", choices=["dino", "dinov2"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--local-views", type=int, default=8)  # DINO's default
    parser.add_argument("--local-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--view-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=__import__("os").cpu_count())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)  # internal: measure one mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args, args.one)))
        return
    rows = []
    for mode in MODES:  # a fresh process each: peak memory belongs to one mode
        command = [sys.executable, __file__, *sys.argv[1:], "--one", mode]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"{args.method}, {args.backbone}, batch {args.batch_size}, {rows[0]['device']} {rows[0]['precision']}, "
          f"{args.threads} threads")
    print(f"{'mode':10} {'views':18} {'step s':>8} {'img/s':>8} {'peak MiB':>9}  {'views ms/img (1 core)':>22}")
    for r in rows:
        print(f"{r['mode']:10} {r['views']:18} {r['step_s']:8.3f} {r['images_per_s']:8.1f} {r['peak_mib']:9.0f}  "
              f"{r['view_ms_per_image']:22.1f}")
    fixed, multi = rows
    print(f"multicrop / fixed: step time x{multi['step_s'] / fixed['step_s']:.2f}, "
          f"peak memory x{multi['peak_mib'] / fixed['peak_mib']:.2f} ({fixed['peak_kind']}), "
          f"view generation x{multi['view_ms_per_image'] / fixed['view_ms_per_image']:.2f}")


if __name__ == "__main__":
    main()

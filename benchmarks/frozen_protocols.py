"""Wall time of radbench's cached linear grid against the seed-repo loop that re-runs the frozen backbone.

(a) radbench: extract features once (cold cache), then train all heads at once on the cached features.
(b) seed style (DINOv2 / DINOv2ForRadiology linear eval): every training step runs the frozen backbone on the
    batch's images, one backbone pass feeding all heads; the winner is retrained on train+val the same way.
(c) on cached features: the 16-head grid against a single head.

Both (a) and (b) use the same heads, optimiser, schedule, batch order and selection, so their test metrics
differ only by the float16 cache. Prints one line per measurement.

    python benchmarks/frozen_protocols.py --backbone dinov2_vits14 --image-size 112 --limit 750 100 120 --epochs 20

`--limit TRAIN VAL TEST` keeps PneumoniaMNIST's own split proportions (3882 / 524 / 624); one number caps each
split alike. The ratio (b)/(a) is bounded by the count of backbone passes:
(epochs * train + val + epochs * (train + val) + test) / (train + val + test), printed as "pass-count bound".
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from radbench.backbones import BackboneConfig, build_backbone
from radbench.config import parse_study
from radbench.data import load_dataset
from radbench.data.transforms import Preprocess
from radbench.features.source import FeatureSource
from radbench.metrics import classification_metrics
from radbench.progress import Reporter
from radbench.protocols import ProtocolInput
from radbench.protocols.base import pick_best
from radbench.protocols.linear import LinearConfig, LinearHeads, probabilities, train_heads
from radbench.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
LRS = [1e-3, 5e-3, 1e-2, 5e-2]  # the radiology fork's grid: 4 lrs x (1 or 4 blocks) x (with/without avgpool)
FEATURES = ["cls", "cls+mean", "last4", "last4+mean"]


def limits(args) -> dict[str, int]:
    values = args.limit * 3 if len(args.limit) == 1 else args.limit
    return dict(zip(["train", "val", "test"], values))


def pass_bound(args) -> float:
    train, val, test = limits(args).values()
    return (args.epochs * train + val + args.epochs * (train + val) + test) / (train + val + test)


def study(args, output: Path) -> dict:
    return {
        "name": "bench", "output_dir": str(output), "image_size": args.image_size, "batch_size": args.batch_size,
        "backbones": [{"name": args.backbone, "weights": "none"}],
        "datasets": [{"name": "pneumonia", "adapter": "medmnist", "path": str(args.data), "limit": limits(args)}],
        "protocols": [{"linear": {"epochs": args.epochs, "lr": LRS, "features": FEATURES,
                                  "batch_size": args.head_batch}}],
    }


def seed_style(args, dataset, cfg: LinearConfig):
    """Backbone in the loop: every step embeds its batch's images; heads identical to radbench's."""
    backbone = build_backbone(BackboneConfig(name=args.backbone, weights="none"), args.image_size)
    layout = backbone.layout(4)
    norm = backbone.description.normalisation
    preprocess = Preprocess(args.image_size, "resize", norm.mean, norm.std, norm.interpolation)

    def embed(split, indices):
        images = torch.stack([preprocess(dataset.splits[split].images.load(int(i))) for i in indices])
        with torch.inference_mode():
            return backbone.forward_bundle(images, layout)

    def union(feature_types):
        columns = [layout.columns(f) for f in feature_types]
        used = np.unique(np.concatenate(columns))
        return torch.from_numpy(used), [np.searchsorted(used, c) for c in columns]

    def embed_batch(index, positions, used):
        """Features of a batch in batch order (a refit batch mixes train and val images)."""
        out = torch.empty(len(positions), len(used))
        for split in {index[p][0] for p in positions}:
            rows = [r for r, p in enumerate(positions) if index[p][0] == split]
            out[rows] = embed(split, [index[positions[r]][1] for r in rows])[:, used]
        return out

    def train(splits, feature_types, lrs):
        used, rows = union(feature_types)
        index = [(s, i) for s in splits for i in range(len(dataset.splits[s]))]
        targets = torch.from_numpy(np.concatenate([dataset.targets(s) for s in splits]))
        heads = LinearHeads(rows, len(used), lrs, targets.shape[1], cfg.momentum, cfg.weight_decay,
                            torch.Generator().manual_seed(0), torch.device("cpu"))
        order_generator = torch.Generator().manual_seed(0 + 1_000_003)
        total = cfg.epochs * math.ceil(len(index) / cfg.batch_size)
        step = 0
        for _ in range(cfg.epochs):
            order = torch.randperm(len(index), generator=order_generator)
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                x = embed_batch(index, batch.tolist(), used)
                heads.step(dataset.task, x, targets[batch], 0.5 * (1 + math.cos(math.pi * step / total)))
                step += 1
        return heads, used

    def predict(heads, used, split):
        n = len(dataset.splits[split])
        logits = [heads.logits(embed(split, range(s, min(n, s + args.batch_size)))[:, used])
                  for s in range(0, n, args.batch_size)]
        return probabilities(dataset.task, torch.cat(logits, dim=2)).double().numpy()

    heads, used = train(["train"], FEATURES, LRS)
    val = predict(heads, used, "val")
    values = [classification_metrics(dataset.task, dataset.targets("val"), val[t, l], dataset.class_names)[0]["auroc"]
              for t in range(len(FEATURES)) for l in range(len(LRS))]
    t, l = divmod(pick_best(values), len(LRS))
    refit, used = train(["train", "val"], [FEATURES[t]], [LRS[l]])
    test = predict(refit, used, "test")[0, 0]
    auroc = classification_metrics(dataset.task, dataset.targets("test"), test, dataset.class_names)[0]["auroc"]
    return auroc, {"feature": FEATURES[t], "lr": LRS[l]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="dinov2_vits14")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--limit", type=int, nargs="+", default=[750, 100, 120], metavar="N",
                        help="samples per split: one number for all, or TRAIN VAL TEST")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128, help="backbone batch, both loops")
    parser.add_argument("--head-batch", type=int, default=128)
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared/data/medmnist/pneumoniamnist_kaggle_variant.npz")
    parser.add_argument("--skip-seed-style", action="store_true")
    args = parser.parse_args()
    if len(args.limit) not in (1, 3):
        parser.error("--limit takes one number or three (TRAIN VAL TEST)")
    import timm  # noqa: F401  (imported before timing: process start-up is not what is compared)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, backbone {args.backbone} "
          f"(random init) at {args.image_size} px, limit {limits(args)}, {args.epochs} epochs, "
          f"{len(LRS) * len(FEATURES)} heads")

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_study(study(args, Path(tmp) / "out"), base_dir=ROOT)
        start = time.perf_counter()
        summary = run_study(config, Reporter(quiet=True))
        cold = time.perf_counter() - start
        extract = sum(e.seconds for e in summary.extractions)
        images = sum(e.images for e in summary.extractions)
        from radbench.results import ResultsStore

        store = ResultsStore(Path(tmp) / "out" / "results.sqlite")
        metrics = store.metrics("test")
        auroc_a = float(metrics.query("metric == 'auroc'")["value"].iloc[0])
        selected = store.jobs()["selected"].iloc[0]
        print(f"(a) radbench cold: {cold:.1f} s total (extraction {extract:.1f} s for {images} images, "
              f"{images / extract:.1f} img/s); test AUROC {auroc_a:.4f}; chosen {selected}")

        # (c) heads on cached features
        dataset = load_dataset(config.datasets[0])
        from radbench.features.cache import FeatureCache

        (folder,) = [p for p in (Path(tmp) / "out" / "features").iterdir()
                     if not p.name.startswith(".") and p.name != "preprocessed"]
        sizes = {name: len(split) for name, split in dataset.splits.items()}
        cached = FeatureCache(folder.parent).find(folder.name.rsplit("-", 1)[0], 4, sizes)
        inputs = ProtocolInput(dataset.task, dataset.class_names, FeatureSource(cached.bundle, cached.layout.columns),
                               {s: dataset.targets(s) for s in dataset.splits}, FEATURES, "auroc", 0,
                               torch.device("cpu"), Reporter(quiet=True))
        cfg = LinearConfig(epochs=args.epochs, lr=LRS, batch_size=args.head_batch)

        def timed(features, lrs):
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                train_heads(inputs, cfg, features, lrs, ["train"], "bench")
                runs.append(time.perf_counter() - t0)
            return statistics.median(runs)

        grid, widest, cls = timed(FEATURES, LRS), timed(["last4+mean"], [1e-2]), timed(["cls"], [1e-2])
        print(f"(c) cached heads, {args.epochs} epochs: 16-head grid {grid * 1000:.0f} ms; one head on the grid's "
              f"widest input (last4+mean) {widest * 1000:.0f} ms -> {grid / widest:.2f}x; one head on cls "
              f"{cls * 1000:.0f} ms -> {grid / cls:.2f}x")

    if args.skip_seed_style:
        return
    start = time.perf_counter()
    auroc_b, chosen_b = seed_style(args, dataset, cfg)
    seed_seconds = time.perf_counter() - start
    print(f"(b) seed style: {seed_seconds:.1f} s; test AUROC {auroc_b:.4f}; chosen {chosen_b}")
    print(f"(a) vs (b): {seed_seconds / cold:.1f}x faster (pass-count bound {pass_bound(args):.1f}x); "
          f"test AUROC difference {100 * (auroc_a - auroc_b):+.2f} pt")


if __name__ == "__main__":
    main()

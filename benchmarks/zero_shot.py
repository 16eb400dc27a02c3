"""Zero-shot on cached features: one text-tower pass per prompt set plus a matrix product. 10 000 cached embeddings
x 14 findings x 10 templates (CheXzero pairs: 2 x 14 x 10 x 2 phrases = 560 prompts) with a tiny open_clip
model's text tower (random weights; the text tower's cost scales with its size, the scoring does not), first with
an empty prompt cache, then with every prompt cached.

    python benchmarks/zero_shot.py [--images 10000] [--model ViT-B-16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

FINDINGS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
            "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax"]
TEMPLATES = ["a chest x-ray showing {}.", "chest radiograph with {}.", "findings consistent with {}.", "{}.",
             "an x-ray with {}.", "a radiograph showing {}.", "frontal chest x-ray: {}.", "there is {}.",
             "the image shows {}.", "evidence of {}."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--model", default="ViT-B-16", help="an open_clip model name (random weights)")
    args = parser.parse_args()
    from radbench.backbones import BackboneConfig
    from radbench.data.base import Task
    from radbench.features.source import FeatureSource
    from radbench.features.text_cache import TextEncoder
    from radbench.progress import Reporter
    from radbench.protocols.base import ProtocolInput
    from radbench.protocols.zero_shot import ZeroShotConfig, run_zero_shot

    rng = np.random.default_rng(0)
    width = 512
    splits = {"train": 100, "val": 1000, "test": args.images}
    features = {s: rng.normal(size=(n, width)).astype(np.float32) for s, n in splits.items()}
    targets = {s: (rng.random((n, len(FINDINGS))) < 0.1).astype(np.float32) for s, n in splits.items()}
    source = FeatureSource(features.__getitem__, lambda t: np.arange(width))
    cfg = ZeroShotConfig(templates=TEMPLATES)
    backbone = BackboneConfig(name=f"open_clip:{args.model}", weights="none")
    with tempfile.TemporaryDirectory() as folder:
        for label in ("empty prompt cache", "every prompt cached"):
            text = TextEncoder(backbone, {"model": args.model, "weights": "none"}, Path(folder))
            inputs = ProtocolInput(Task.MULTILABEL, tuple(FINDINGS), source, targets, ["embed"], "auroc", 0, "cpu",
                                   Reporter(quiet=True), text=text)
            start = time.perf_counter()
            result = run_zero_shot(cfg, inputs)
            seconds = time.perf_counter() - start
            print(f"{label}: {seconds:.2f} s for {args.images} test + 1000 val embeddings x {len(FINDINGS)} findings "
                  f"x {len(TEMPLATES)} templates; {text.computed} prompts through the text tower "
                  f"({args.model}); test scores {result.test_scores.shape}")


if __name__ == "__main__":
    main()

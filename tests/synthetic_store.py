"""A results store written directly (no model runs): many backbones x many protocol variants on one binary test
split, with costs, for report tests whose subject is the page and its figures, not the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radbench.results import JobRecord, ResultsStore

PLAIN = ["knn", "linear", "logreg", "finetune", "lora", "bitfit", "transformer_head"]
CURVES = {"few_shot": [f"{n}shot" for n in (1, 2, 4, 8, 16)],
          "progressive_freezing": [f"frozen{k}" for k in range(6)],
          "decapitation": [f"{k}blocks" for k in range(1, 7)],
          "decapitated_transformer": [f"{k}blocks" for k in (3, 6)]}


def protocol_labels() -> list[tuple[str, str]]:
    """(label, protocol type): 7 plain protocols and 19 curve points, 26 variants."""
    labels = [(name, name) for name in PLAIN]
    for kind, points in CURVES.items():
        protocol = "transformer_head" if kind == "decapitated_transformer" else kind
        labels += [(f"{kind}@{point}", protocol) for point in points]
    return labels


def write_store(output_dir: Path, backbones: int = 20, test_size: int = 40, seed: int = 0) -> ResultsStore:
    rng = np.random.default_rng(seed)
    store = ResultsStore(Path(output_dir) / "results.sqlite")
    targets = np.zeros((test_size, 2), np.float32)
    labels = rng.integers(0, 2, test_size)
    labels[:2] = [0, 1]
    targets[np.arange(test_size), labels] = 1.0
    ids = [f"case{i:03d}" for i in range(test_size)]
    for b in range(backbones):
        backbone = f"timm:vit_variant_with_a_long_name_{b:02d}"
        for label, protocol in protocol_labels():
            skill = 0.3 + 0.05 * b / backbones + rng.normal(0, 0.2)
            positive = 1 / (1 + np.exp(-(skill * 4 * (labels - 0.5) + rng.normal(0, 1, test_size))))
            scores = np.stack([1 - positive, positive], axis=1)
            key = f"{b:02d}-{label}"
            config = {"backbone": {"name": backbone, "weights": "none"}, "preprocess": {"image_size": 32},
                      "dataset": {"name": "synthetic"}, "protocol": {"type": protocol}, "seed": 0, "repeat": 0}
            from sklearn.metrics import roc_auc_score

            auroc = float(roc_auc_score(labels, positive))
            store.save(JobRecord(
                key=key, study="many", backbone=backbone, dataset="synthetic", protocol=label,
                protocol_type=protocol, seed=0, repeat=0, task="binary", config=config, selected={}, candidates=[],
                details={}, timings={}, feature_cache=None, val_metrics={"auroc": auroc},
                test_metrics={"auroc": auroc, "accuracy": float(((positive > 0.5) == labels).mean())},
                class_names=("normal", "finding"), sample_ids=ids, test_targets=targets, test_scores=scores,
                extra_metrics={"trainable_params": float(10 ** rng.uniform(3, 7)), "train_seconds": rng.uniform(1, 90),
                               "infer_ms_per_image": rng.uniform(1, 20), "peak_mem_mb": rng.uniform(100, 4000)},
                patient_ids=ids))
    return store

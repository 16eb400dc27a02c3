"""From an adapter's raw splits to a checked dataset: split generation, val carving, limit, leakage check."""

from __future__ import annotations

import numpy as np

from radbench.data.base import DatasetConfigBase, LabeledDataset, Split, Task
from radbench.data.splits import check_classes_present, complete_splits, label_matrix, limit_split
from radbench.data.volumes import VolumeConfig
from radbench.errors import DataError


def infer_task(labels: np.ndarray, given: Task | None) -> Task:
    if given is not None:
        return given
    if labels.ndim == 2 and labels.shape[1] > 1:
        return Task.MULTILABEL
    return Task.BINARY if len(np.unique(labels)) <= 2 else Task.MULTICLASS


def pooled(parts: list[Split], dataset: str) -> Split:
    """The adapter's splits as one, to be split again (`resplit: true`)."""
    from radbench.data.base import ArrayImages, FileImages

    images = [part.images for part in parts]
    if all(isinstance(i, FileImages) for i in images) and len({i.intensity for i in images}) == 1:
        joined = FileImages(tuple(path for i in images for path in i.paths), images[0].intensity)
    elif all(isinstance(i, ArrayImages) for i in images):
        joined = ArrayImages(np.concatenate([i.array for i in images]))
    else:
        raise DataError(f"dataset {dataset!r}: resplit pools image files or arrays; this dataset's images are "
                        f"{type(images[0]).__name__}")
    columns = set.intersection(*(set(part.groups) for part in parts)) if parts else set()
    return Split("all", np.concatenate([p.sample_ids for p in parts]), np.concatenate([p.patient_ids for p in parts]),
                 np.concatenate([p.labels for p in parts]), joined,
                 {c: np.concatenate([p.groups[c] for p in parts]) for c in sorted(columns)})


def assemble_dataset(
    cfg: DatasetConfigBase,
    task: Task,
    class_names: tuple[str, ...],
    parts: dict[str, Split],
    fingerprint: str,
    split_origin: str,
    volume: VolumeConfig | None = None,
) -> LabeledDataset:
    """`parts` holds the adapter's splits: train/val/test, a subset of them, or one part named "all"."""
    num_classes = len(class_names)
    if cfg.class_names is not None:
        if len(cfg.class_names) != num_classes:
            raise DataError(
                f"dataset {cfg.name!r}: class_names has {len(cfg.class_names)} names but the data has {num_classes} classes"
            )
        class_names = tuple(cfg.class_names)
    if getattr(cfg, "resplit", False) and set(parts) != {"all"}:
        parts = {"all": pooled(list(parts.values()), cfg.name)}
    splits, generated, notes = complete_splits(
        parts, lambda split: label_matrix(task, split.labels, num_classes), list(cfg.split_fractions),
        cfg.split_seed, cfg.name)
    split_origin = generated or split_origin
    limited = {name: limit_split(split, cfg.limit_for(name), task, num_classes, cfg.split_seed, cfg.balance)
               for name, split in splits.items()}
    notes = list(notes) + [f"{name} limited to {len(limited[name])} of {len(split)} samples (limit)"
                           for name, split in splits.items() if len(limited[name]) < len(split)]
    splits = limited
    check_classes_present(splits["train"], task, class_names, cfg.name, cfg.limit_for("train"))
    return LabeledDataset(
        name=cfg.name,
        task=task,
        class_names=class_names,
        splits=splits,
        fingerprint=fingerprint,
        split_origin=split_origin,
        notes=tuple(notes),
        volume=volume or cfg.volume,
    )


"""From an adapter's raw splits to a checked dataset: split generation, val carving, limit, leakage check."""

from __future__ import annotations

import numpy as np

from radbench.data.base import SPLITS, DatasetConfigBase, LabeledDataset, Split, Task
from radbench.data.splits import (
    check_classes_present,
    check_no_leakage,
    label_matrix,
    limit_split,
    stratified_patient_split,
)
from radbench.data.volumes import VolumeConfig
from radbench.errors import DataError


def infer_task(labels: np.ndarray, given: Task | None) -> Task:
    if given is not None:
        return given
    if labels.ndim == 2 and labels.shape[1] > 1:
        return Task.MULTILABEL
    return Task.BINARY if len(np.unique(labels)) <= 2 else Task.MULTICLASS


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
    notes: list[str] = []
    num_classes = len(class_names)
    if cfg.class_names is not None:
        if len(cfg.class_names) != num_classes:
            raise DataError(
                f"dataset {cfg.name!r}: class_names has {len(cfg.class_names)} names but the data has {num_classes} classes"
            )
        class_names = tuple(cfg.class_names)
    splits = dict(parts)
    fractions = list(cfg.split_fractions)
    if "all" in splits:
        whole = splits.pop("all")
        indices = stratified_patient_split(
            whole.patient_ids, label_matrix(task, whole.labels, num_classes), fractions, cfg.split_seed
        )
        splits = {name: whole.subset(idx).renamed(name) for name, idx in zip(SPLITS, indices)}
        split_origin = f"generated(seed={cfg.split_seed}, fractions={fractions})"
    if "train" not in splits:
        raise DataError(f"dataset {cfg.name!r}: no training split")
    for missing in ("val", "test"):
        if missing not in splits:
            # carve from train, patient-level; never from test, so test is never used for a choice
            share = fractions[SPLITS.index(missing)] / (fractions[0] + fractions[SPLITS.index(missing)])
            train = splits["train"]
            rest, carved = stratified_patient_split(
                train.patient_ids, label_matrix(task, train.labels, num_classes), [1 - share, share], cfg.split_seed
            )
            splits["train"] = train.subset(rest).renamed("train")
            splits[missing] = train.subset(carved).renamed(missing)
            notes.append(f"{missing} split carved from train ({len(carved)} samples, patient-level, seed {cfg.split_seed})")
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise DataError(f"dataset {cfg.name!r}: the {name} split is empty")
    check_no_leakage(splits, cfg.name)
    if cfg.limit is not None:
        splits = {name: limit_split(split, cfg.limit, task, num_classes, cfg.split_seed, cfg.balance)
                  for name, split in splits.items()}
    check_classes_present(splits["train"], task, class_names, cfg.name, cfg.limit)
    return LabeledDataset(
        name=cfg.name,
        task=task,
        class_names=class_names,
        splits={name: splits[name] for name in SPLITS},
        fingerprint=fingerprint,
        split_origin=split_origin,
        notes=tuple(notes),
        volume=volume or cfg.volume,
    )


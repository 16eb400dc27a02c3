"""Datasets: adapters produce `LabeledDataset`s with patient-level train/val/test splits."""

from radbench.data import (  # noqa: F401  (register adapters)
    aptos,
    cbis_ddsm,
    chexpert,
    csv_table,
    decathlon,
    folder,
    isic,
    mask_folder,
    medmnist,
    nih,
)
from radbench.data.base import LabeledDataset, Split, Task
from radbench.data.registry import ADAPTERS


def load_dataset(cfg) -> LabeledDataset:
    return ADAPTERS.get(cfg.adapter).load(cfg)


__all__ = ["ADAPTERS", "LabeledDataset", "Split", "Task", "load_dataset"]

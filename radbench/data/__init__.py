"""Datasets: adapters produce `LabeledDataset`s with patient-level train/val/test splits."""

from radbench.data import csv_table, folder, medmnist  # noqa: F401  (register adapters)
from radbench.data.base import LabeledDataset, Split, Task
from radbench.data.registry import ADAPTERS


def load_dataset(cfg) -> LabeledDataset:
    return ADAPTERS.get(cfg.adapter).load(cfg)


__all__ = ["ADAPTERS", "LabeledDataset", "Split", "Task", "load_dataset"]

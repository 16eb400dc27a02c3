"""Registry of dataset adapters: name -> config model + loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from radbench.data.base import DatasetConfigBase, LabeledDataset
from radbench.registry import Registry


@dataclass(frozen=True)
class Adapter:
    name: str
    config: type[DatasetConfigBase]
    load: Callable[..., LabeledDataset]
    description: str
    kind: str = "classification"  # or "segmentation": which protocols apply


ADAPTERS: Registry[Adapter] = Registry("dataset adapter")

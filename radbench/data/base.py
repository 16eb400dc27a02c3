"""The dataset interface every adapter produces: labelled splits of images with patient ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import field_validator

from radbench.data.fingerprint import file_fingerprint  # noqa: F401  (the adapters import it from here)
from radbench.data.intensity import IntensityConfig
from radbench.data.shifts import CorruptionsConfig, ExternalTestConfig
from radbench.data.volumes import VolumeConfig
from radbench.schema import InputPath, StrictModel

SPLITS = ("train", "val", "test")


class Task(str, Enum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    ORDINAL = "ordinal"

    @property
    def single_label(self) -> bool:
        return self is not Task.MULTILABEL


class ImageSource(Protocol):
    """Random access to the images of one split; `load` returns HxW or HxWxC arrays."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray: ...

    def subset(self, indices: np.ndarray) -> "ImageSource": ...

    @property
    def in_memory(self) -> bool: ...


@dataclass(frozen=True)
class ArrayImages:
    """Images held in one array (N, H, W[, C]), e.g. a MedMNIST npz."""

    array: np.ndarray

    def __len__(self) -> int:
        return len(self.array)

    def load(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])

    def subset(self, indices: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.array[np.asarray(indices, dtype=np.int64)])

    @property
    def in_memory(self) -> bool:
        return True


@dataclass(frozen=True)
class FileImages:
    """Images stored as one file each, decoded on access."""

    paths: tuple[Path, ...]
    intensity: IntensityConfig | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        from radbench.data.readers import read_image

        return read_image(self.paths[index], self.intensity)

    def subset(self, indices: np.ndarray) -> "FileImages":
        return FileImages(tuple(self.paths[int(i)] for i in indices), self.intensity)

    @property
    def in_memory(self) -> bool:
        return False


@dataclass(frozen=True)
class Split:
    name: str
    sample_ids: np.ndarray  # str, unique within the dataset
    patient_ids: np.ndarray  # str; equals sample_ids when the data has no patient ids
    labels: np.ndarray  # single-label: int64 (N,); multi-label: float32 (N, C), NaN = missing
    images: ImageSource
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # subgroup column -> per-sample value (str)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def renamed(self, name: str) -> "Split":
        return replace(self, name=name)

    def subset(self, indices: np.ndarray) -> "Split":
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            sample_ids=self.sample_ids[indices],
            patient_ids=self.patient_ids[indices],
            labels=self.labels[indices],
            images=self.images.subset(indices),
            groups={column: values[indices] for column, values in self.groups.items()},
        )


@dataclass(frozen=True)
class LabeledDataset:
    name: str
    task: Task
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    fingerprint: str  # identity of the data files: changes when any file changes
    split_origin: str  # "official", "column" or "generated(seed=..)"
    notes: tuple[str, ...] = field(default_factory=tuple)
    volume: VolumeConfig | None = None  # set for 3D data: how volumes become slices and back

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def targets(self, split: str) -> np.ndarray:
        """(N, C) float32 targets: one-hot for single-label tasks, multi-hot with NaN for multi-label."""
        return labels_to_targets(self.task, self.splits[split].labels, self.num_classes)


def labels_to_targets(task: Task, labels: np.ndarray, num_classes: int) -> np.ndarray:
    if task is Task.MULTILABEL:
        return labels.astype(np.float32)
    targets = np.zeros((len(labels), num_classes), dtype=np.float32)
    targets[np.arange(len(labels)), labels.astype(np.int64)] = 1.0
    return targets


def content_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]


class DatasetConfigBase(StrictModel):
    """Keys every dataset entry accepts; adapters add their own."""

    name: str
    adapter: str
    path: InputPath
    # at most N samples per split (stratified, seeded, patients kept whole); or per split, e.g. {train: 1000}
    limit: int | dict[Literal["train", "val", "test"], int] | None = None
    task: Task | None = None  # inferred when omitted; `ordinal` must be given
    class_names: list[str] | None = None
    resize: Literal["resize", "pad", "crop"] | None = None  # overrides the study's resize mode
    split_seed: int = 0  # seed of generated splits and of `limit` sampling
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    # pool the adapter's own splits (official train / valid / test) and draw train / val / test by patient with
    # split_fractions, as papers that re-split a dataset did (Huix et al.: 80/10/10 of each dataset)
    resplit: bool = False
    balance: bool = False  # with limit: equal samples per class (single-label), patients whole
    intensity: IntensityConfig | None = None  # window preset / [center, width] / percentiles
    volume: VolumeConfig | None = None  # 3D data: axis, slice sampling, 2.5D, aggregation, spacing
    on_bad_file: Literal["error", "skip"] = "error"  # unreadable images: stop before extraction, or skip them
    # does the winner generalise (data/shifts.py): other datasets' test splits, metadata subgroups, corrupted tests
    external_tests: list[ExternalTestConfig] = []
    external_only: bool = False  # serves as another dataset's external test only: no protocol runs on it
    subgroups: list[str] = []  # metadata columns, e.g. [Patient Gender, Patient Age, View Position]
    age_bins: list[float] | None = None  # edges for numeric subgroup columns, e.g. [0, 40, 60, 80, 120]
    corruptions: CorruptionsConfig | None = None

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value):
        values = value.values() if isinstance(value, dict) else [value]
        if any(v is not None and v < 1 for v in values):
            raise ValueError("limit must be a positive integer (or a mapping of split to positive integer)")
        return value

    def limit_for(self, split: str) -> int | None:
        """The sample cap of one split; a split missing from a per-split mapping is kept whole."""
        return self.limit.get(split) if isinstance(self.limit, dict) else self.limit

    @field_validator("age_bins")
    @classmethod
    def _bins(cls, value):
        if value is not None and (len(value) < 2 or any(b <= a for a, b in zip(value, value[1:]))):
            raise ValueError(f"age_bins {list(value)}: give at least two edges in increasing order, each once "
                             "(e.g. [0, 40, 60, 80, 120])")
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("split_fractions must be three positive numbers summing to 1 (train, val, test)")
        return value

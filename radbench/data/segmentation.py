"""Segmentation datasets: images paired with masks, 2D (PNG masks) or 3D (label volumes).

Masks become integer class maps (0 = background). Pairing and sizes are checked when the dataset is
loaded, from file headers only, so a mismatch is reported before any work; a mask value outside the
dataset's classes is reported with the file when the mask is read."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from radbench.data.base import DatasetConfigBase
from radbench.data.splits import complete_splits, limit_indices
from radbench.data.volumes import VolumeConfig
from radbench.errors import DataError

IGNORE = -1  # label of pixels left out of the loss and the metrics


@dataclass(frozen=True)
class MaskFiles:
    """2D masks: `threshold` binarises anti-aliased masks (value > threshold is class 1); else stored values
    map through `values` (e.g. {0: 0, 255: 1}) and anything else is an error naming the file."""

    paths: tuple[Path, ...]
    threshold: int | None = None
    values: dict[int, int] | None = None
    num_classes: int = 2
    ignore: int | None = None  # stored value left out of the loss and the metrics (label -1)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        from radbench.data.readers.image import read_pil_image

        path = self.paths[index]
        raw = read_pil_image(path)
        if raw.ndim == 3:
            raw = raw[..., 0]
        ignored = raw == self.ignore if self.ignore is not None else None
        if self.threshold is not None:
            labels = (raw > self.threshold).astype(np.int64)
        else:
            labels = map_mask_values(np.where(ignored, 0, raw) if ignored is not None else raw, self.values,
                                     self.num_classes, path)
        if ignored is not None:
            labels[ignored] = IGNORE
        return labels

    def subset(self, indices: np.ndarray) -> "MaskFiles":
        return replace(self, paths=tuple(self.paths[int(i)] for i in indices))


@dataclass(frozen=True)
class UnionMasks:
    """Several binary mask files per sample combined into one map (Montgomery: left and right lung)."""

    groups: tuple[tuple[Path, ...], ...]
    separate: bool = False  # False: union is class 1; True: file k is class k+1
    threshold: int = 127

    def __len__(self) -> int:
        return len(self.groups)

    def load(self, index: int) -> np.ndarray:
        from radbench.data.readers.image import read_pil_image

        out = None
        for k, path in enumerate(self.groups[index]):
            mask = read_pil_image(path)
            mask = (mask[..., 0] if mask.ndim == 3 else mask) > self.threshold
            out = np.zeros(mask.shape, dtype=np.int64) if out is None else out
            out[mask] = k + 1 if self.separate else 1
        return out

    def subset(self, indices: np.ndarray) -> "UnionMasks":
        return replace(self, groups=tuple(self.groups[int(i)] for i in indices))


@dataclass(frozen=True)
class LabelVolumes:
    """3D label maps (NIfTI / NRRD), canonical orientation like the images, values checked against classes."""

    paths: tuple[Path, ...]
    num_classes: int
    values: dict[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load_volume(self, index: int):
        values = tuple(sorted(self.values.items())) if self.values else None
        return _label_volume(self.paths[index], values, self.num_classes)

    def subset(self, indices: np.ndarray) -> "LabelVolumes":
        return replace(self, paths=tuple(self.paths[int(i)] for i in indices))


@functools.lru_cache(maxsize=4)
def _label_volume(path: Path, values: tuple | None, num_classes: int):
    """A label volume read and checked once per process (training reads it slice by slice)."""
    from radbench.data.readers.volume import read_volume

    volume = read_volume(path)
    labels = np.rint(volume.array).astype(np.int64)
    return volume.with_array(map_mask_values(labels, dict(values) if values else None, num_classes, path))


def map_mask_values(raw: np.ndarray, values: dict[int, int] | None, num_classes: int, path: Path) -> np.ndarray:
    present = np.unique(raw)
    if values is not None:
        unknown = [int(v) for v in present if int(v) not in values]
        if unknown:
            raise DataError(f"{path}: mask value {unknown[0]} is not in mask_values {sorted(values)}")
        lookup = np.zeros(int(present.max()) + 1, dtype=np.int64)
        for stored, label in values.items():
            if stored < len(lookup):
                lookup[stored] = label
        return lookup[raw.astype(np.int64)]
    if present.min() < 0 or present.max() >= num_classes:
        bad = [int(v) for v in present if v < 0 or v >= num_classes][0]
        hint = "; set mask_threshold for anti-aliased masks" if len(present) > num_classes else ""
        raise DataError(f"{path}: mask value {bad} is outside the {num_classes} classes (0..{num_classes - 1}){hint}")
    return raw.astype(np.int64)


@dataclass(frozen=True)
class SegSplit:
    name: str
    sample_ids: np.ndarray
    patient_ids: np.ndarray
    images: object  # ImageSource (2D) or VolumeSource (3D)
    masks: object  # MaskFiles / UnionMasks / LabelVolumes

    def __len__(self) -> int:
        return len(self.sample_ids)

    def subset(self, indices: np.ndarray) -> "SegSplit":
        indices = np.asarray(indices, dtype=np.int64)
        return replace(self, sample_ids=self.sample_ids[indices], patient_ids=self.patient_ids[indices],
                       images=self.images.subset(indices), masks=self.masks.subset(indices))

    def renamed(self, name: str) -> "SegSplit":
        return replace(self, name=name)


@dataclass(frozen=True)
class SegmentationDataset:
    name: str
    class_names: tuple[str, ...]  # index 0 is the background
    splits: dict[str, SegSplit]
    fingerprint: str
    split_origin: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    volume: VolumeConfig | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def assemble_segmentation(cfg: DatasetConfigBase, class_names: tuple[str, ...], parts: dict[str, SegSplit],
                          fingerprint: str, origin: str, volume: VolumeConfig | None = None,
                          notes: tuple[str, ...] = ()) -> SegmentationDataset:
    """Patient-level splits (generated when the layout has none, val carved from train), leakage check, limit."""
    splits, generated, carved = complete_splits(parts, lambda split: np.ones((len(split), 1)),
                                                list(cfg.split_fractions), cfg.split_seed, cfg.name)
    origin, notes = generated or origin, [*notes, *carved]
    splits = {n: s if cfg.limit_for(n) is None else
              s.subset(limit_indices(s.patient_ids, np.ones((len(s), 1)), cfg.limit_for(n), cfg.split_seed))
              for n, s in splits.items()}
    return SegmentationDataset(cfg.name, class_names, splits, fingerprint, origin, tuple(notes), volume)

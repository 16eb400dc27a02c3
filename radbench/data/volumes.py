"""3D data for 2D backbones: volume sources, slice sampling along an axis, 2.5D context, resampling.

A volume split's images are a `VolumeSource`; extraction turns each volume into its sampled slices, embeds
them, and aggregates the slice features into one vector per volume (mean, max, or both)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from radbench.data.intensity import IntensityConfig, apply_intensity
from radbench.data.readers.volume import Volume, read_volume
from radbench.schema import StrictModel


class VolumeConfig(StrictModel):
    axis: Literal["axial", "coronal", "sagittal"] = "axial"
    slices: Literal["all", "every", "central"] = "all"
    every: int = Field(default=1, ge=1)  # with slices: every — keep every n-th slice
    central_fraction: float = Field(default=0.5, gt=0, le=1)  # with slices: central — the middle band
    context: Literal["2d", "2.5d"] = "2d"  # 2.5d: slices k-1, k, k+1 as the three input channels
    aggregate: Literal["mean", "max", "mean+max"] = "mean"  # slice features -> one vector per volume
    spacing: tuple[float, float, float] | None = None  # resample to (z, y, x) mm before slicing

    @model_validator(mode="after")
    def _consistent(self) -> "VolumeConfig":
        if self.every > 1 and self.slices != "every":
            raise ValueError("`every` needs `slices: every`")
        return self

    @property
    def parts(self) -> int:
        return 2 if self.aggregate == "mean+max" else 1

    def every_slice(self) -> "VolumeConfig":
        """The same view without slice sampling: inference reads every slice."""
        return VolumeConfig(axis=self.axis, context=self.context, spacing=self.spacing)


def resample(volume: Volume, spacing: tuple[float, float, float], mode: str = "trilinear") -> Volume:
    """Resample the canonical array to a target (z, y, x) spacing (trilinear; `nearest` for label maps)."""
    import torch
    import torch.nn.functional as F

    size = [max(1, round(n * s / t)) for n, s, t in zip(volume.array.shape, volume.spacing, spacing)]
    tensor = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    array = F.interpolate(tensor, size=size, mode=mode, **kwargs)[0, 0].numpy()
    return Volume(array, tuple(float(t) for t in spacing), volume.affine, volume.source_shape, volume.orientation)


def oriented_stack(array: np.ndarray, axis: str) -> np.ndarray:
    """(K, H, W) stack of slices along `axis`, each in display orientation (superior at the top for
    coronal and sagittal views, anterior on the left for sagittal)."""
    if axis == "axial":
        return array
    if axis == "coronal":
        return np.transpose(array[::-1], (1, 0, 2))
    return np.transpose(array[::-1], (2, 0, 1))


def unorient_stack(stack: np.ndarray, axis: str) -> np.ndarray:
    """Inverse of `oriented_stack`: a (K, H, W) stack along `axis` back to the canonical (Z, Y, X) array."""
    if axis == "axial":
        return stack
    if axis == "coronal":
        return np.transpose(stack, (1, 0, 2))[::-1]
    return np.transpose(stack, (1, 2, 0))[::-1]


def sample_indices(count: int, cfg: VolumeConfig) -> np.ndarray:
    if cfg.slices == "every":
        return np.arange(0, count, cfg.every)
    if cfg.slices == "central":
        keep = max(1, round(count * cfg.central_fraction))
        start = (count - keep) // 2
        return np.arange(start, start + keep)
    return np.arange(count)


def slice_images(volume: Volume, cfg: VolumeConfig, indices: np.ndarray | None = None) -> list[np.ndarray]:
    """The sampled slices (or `indices`) as HxW (2d) or HxWx3 (2.5d: neighbours as channels, edges repeated)."""
    stack = oriented_stack(volume.array, cfg.axis)
    indices = sample_indices(len(stack), cfg) if indices is None else indices
    if cfg.context == "2d":
        return [np.ascontiguousarray(stack[k]) for k in indices]
    last = len(stack) - 1
    return [np.ascontiguousarray(np.stack([stack[max(k - 1, 0)], stack[k], stack[min(k + 1, last)]], axis=-1))
            for k in indices]


@functools.lru_cache(maxsize=4)
def _prepared_volume(path: Path, channel: int | None, spacing, intensity: IntensityConfig | None) -> Volume:
    """Decoded, resampled and intensity-mapped once per process: training reads a volume slice by slice, and
    percentiles over millions of voxels must not be recomputed for every slice."""
    volume = read_volume(path, channel)
    if spacing is not None:
        volume = resample(volume, spacing)
    return volume.with_array(apply_intensity(volume.array, intensity, "percentiles"))


@dataclass(frozen=True)
class FileVolumes:
    """One volume per path (NIfTI / NRRD / MHA / DICOM series folder / multi-frame DICOM), intensity-mapped."""

    paths: tuple[Path, ...]
    intensity: IntensityConfig | None = None
    spacing: tuple[float, float, float] | None = None
    channel: int | None = None  # one modality of 4D files

    def __len__(self) -> int:
        return len(self.paths)

    def load_volume(self, index: int) -> Volume:
        return _prepared_volume(self.paths[index], self.channel, self.spacing, self.intensity)

    def subset(self, indices: np.ndarray) -> "FileVolumes":
        return FileVolumes(tuple(self.paths[int(i)] for i in indices), self.intensity, self.spacing, self.channel)

    @property
    def in_memory(self) -> bool:
        return False

    is_volume = True


@dataclass(frozen=True)
class ArrayVolumes:
    """Volumes held in one array (N, D, H, W), e.g. MedMNIST 3D: axis 0 of each volume is taken as z."""

    array: np.ndarray

    def __len__(self) -> int:
        return len(self.array)

    def load_volume(self, index: int) -> Volume:
        data = np.asarray(self.array[index])
        unit = data.astype(np.float32) / 255.0 if data.dtype == np.uint8 else apply_intensity(data, None, "range")
        return Volume(unit, (1.0, 1.0, 1.0), np.eye(4), tuple(data.shape), np.array([[0, 1], [1, 1], [2, 1]]))

    def subset(self, indices: np.ndarray) -> "ArrayVolumes":
        return ArrayVolumes(self.array[np.asarray(indices, dtype=np.int64)])

    @property
    def in_memory(self) -> bool:
        return True

    is_volume = True

"""Preprocessing cache: decode + window + resize every image once into a memory-mapped uint8/uint16 array.

Decoding a 1024^2 PNG costs ~17 ms per core and a compressed DICOM more; on a GPU that, not the model,
bounds extraction. The array (one per split, at the model's input size) is content-hashed, written to a
temporary file and renamed, and reused by every backbone with the same input size and resize settings.
Building it decodes every file, so it is also where unreadable files are found: their count and names stop
the run before extraction, or they are left out with `on_bad_file: skip`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from radbench import arrayfile
from radbench.data.base import FileImages, ImageSource, LabeledDataset
from radbench.data.transforms import Preprocess
from radbench.errors import DataError
from radbench.progress import Reporter

PRECACHE_VERSION = 2  # 2: unreadable files recorded with each split's array


@dataclass(frozen=True)
class PrecachedImages:
    """Images already at the input size, read from the memory-mapped cache as float32 in [0, 1]."""

    path: Path
    indices: np.ndarray

    def _array(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> np.ndarray:
        image = self._array()[int(self.indices[index])]
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)

    def subset(self, indices: np.ndarray) -> "PrecachedImages":
        return PrecachedImages(self.path, self.indices[np.asarray(indices, dtype=np.int64)])

    @property
    def in_memory(self) -> bool:
        return True  # no decoding: worker processes would only add overhead


class _Decode(Dataset):
    """(index, quantised image at input size) or (index, error message) — errors are collected, not raised."""

    def __init__(self, images: ImageSource, preprocess: Preprocess, dtype: str):
        self.images, self.preprocess, self.dtype = images, preprocess, np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        try:
            unit = self.preprocess.fit_unit(self.images.load(index))  # (C, S, S) in [0, 1]
        except DataError as error:
            return index, str(error)
        scale = float(np.iinfo(self.dtype).max)
        return index, (unit.permute(1, 2, 0).numpy() * scale).round().astype(self.dtype)


def wants_precache(images: ImageSource, mode: str) -> bool:
    if mode == "off" or getattr(images, "is_volume", False) or isinstance(images, PrecachedImages):
        return False
    return mode == "on" or isinstance(images, FileImages)


def uses_precache(dataset: LabeledDataset, mode: str) -> bool:
    """Whether the run reads this dataset's images from the preprocessing cache (quantized to its dtype)."""
    return any(wants_precache(split.images, mode) for split in dataset.splits.values())


def build_split(images: ImageSource, preprocess: Preprocess, target: Path, dtype: str, workers: int,
                reporter: Reporter, description: str) -> list[tuple[int, str]]:
    """Write the split's array to `target` with its list of unreadable images (index, message) in the same
    commit (the array's record): a kill at any moment leaves both or neither. Returns that list."""
    size = preprocess.image_size
    loader = DataLoader(_Decode(images, preprocess, dtype), batch_size=16, num_workers=workers,
                        collate_fn=lambda items: items)
    bad: list[tuple[int, str]] = []
    with arrayfile.filling(target) as fill, reporter.task(description, len(images)) as advance:
        for items in loader:
            for index, value in items:
                if isinstance(value, str):
                    bad.append((index, value))
                    continue
                if fill.array is None:  # channel count of the first readable image (gray: 1, colour: 3)
                    channels = value.shape[2]
                    fill.create(dtype, (len(images), size, size) if channels == 1 else (len(images), size, size, 3))
                fill.array[index] = _match_channels(value, fill.array.ndim)
            advance(len(items))
        if fill.array is None:
            raise DataError(f"{description.strip()}: no readable image ({bad[0][1] if bad else 'empty split'})")
        fill.meta = {"bad": [[int(i), message] for i, message in bad]}
    return bad


def _match_channels(image: np.ndarray, ndim: int) -> np.ndarray:
    if ndim == 3:  # grayscale cache
        return image[..., 0] if image.shape[2] == 1 else image.mean(axis=2).round().astype(image.dtype)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def precache_dataset(dataset: LabeledDataset, preprocess: Preprocess, root: Path, dtype: str, mode: str,
                     on_bad_file: str, workers: int, reporter: Reporter) -> tuple[LabeledDataset, Preprocess]:
    """The dataset reading its 2D images from the preprocessing cache (built when missing), and the
    preprocessing that matches it. Unreadable files stop the run, or are left out with on_bad_file: skip."""
    if not uses_precache(dataset, mode):
        return dataset, preprocess
    from radbench.features.cache import ids_digest, stable_hash

    cached_preprocess = replace(preprocess, quantize=dtype)
    key = stable_hash({"version": PRECACHE_VERSION, "data": dataset.fingerprint, "fit": preprocess.fit_identity(),
                       "dtype": dtype, "splits": {n: ids_digest(s.sample_ids) for n, s in dataset.splits.items()}})
    folder = Path(root) / key
    bad: dict[str, list] = {}
    for name, split in dataset.splits.items():
        target = folder / f"{name}.npy"
        if arrayfile.is_intact(target, len(split), reporter.warn):
            bad[name] = arrayfile.verify(target)["meta"]["bad"]
            reporter.info(f"  preprocessed images: cache hit {dataset.name} / {name}")
        else:
            bad[name] = build_split(split.images, preprocess, target, dtype, workers, reporter,
                                    f"  preprocess {dataset.name} / {name} -> {preprocess.image_size} px")
    bad_total = [(name, i, m) for name, items in bad.items() for i, m in items]
    if bad_total and on_bad_file == "error":
        listed = "; ".join(m for _, _, m in bad_total[:5]) + (" ..." if len(bad_total) > 5 else "")
        raise DataError(f"dataset {dataset.name!r}: {len(bad_total)} unreadable image(s): {listed} "
                        "(set `on_bad_file: skip` to leave them out)")
    splits = {}
    for name, split in dataset.splits.items():
        drop = {i for i, _ in bad[name]}
        keep = np.array([i for i in range(len(split)) if i not in drop], dtype=np.int64)
        cached = PrecachedImages(folder / f"{name}.npy", np.arange(len(split)))
        splits[name] = replace(split, images=cached).subset(keep)
    notes = dataset.notes
    if bad_total:
        reporter.warn(f"dataset {dataset.name}: {len(bad_total)} unreadable image(s) left out (on_bad_file: skip)")
        notes = (*notes, f"{len(bad_total)} unreadable images left out: " + ", ".join(
            str(dataset.splits[n].sample_ids[i]) for n, i, _ in bad_total))
    return replace(dataset, splits=splits, notes=notes), cached_preprocess


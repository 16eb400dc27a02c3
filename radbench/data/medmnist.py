"""MedMNIST npz files, 2D and 3D (any size variant), from a local path or downloaded with the `medmnist` package."""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import model_validator

from radbench.data.base import SPLITS, ArrayImages, DatasetConfigBase, LabeledDataset, Split, Task, content_fingerprint
from radbench.data.build import assemble_dataset, infer_task
from radbench.data.registry import ADAPTERS, Adapter
from radbench.data.volumes import ArrayVolumes, VolumeConfig
from radbench.errors import DataError, DownloadError
from radbench.schema import InputPath, OutputPath

MEDMNIST_TASKS = {
    "binary-class": Task.BINARY,
    "multi-class": Task.MULTICLASS,
    "multi-label, binary-class": Task.MULTILABEL,
    "ordinal-regression": Task.ORDINAL,
}


class MedmnistConfig(DatasetConfigBase):
    adapter: Literal["medmnist"]
    path: InputPath | None = None  # a local npz; else `flag` is downloaded
    flag: str | None = None  # MedMNIST name, e.g. pneumoniamnist; also gives class names and task
    size: Literal[28, 64, 128, 224] = 28  # size variant to download
    root: OutputPath | None = None  # download folder (default ~/.medmnist)

    @model_validator(mode="after")
    def _path_or_flag(self) -> "MedmnistConfig":
        if self.path is None and self.flag is None:
            raise ValueError("give `path` (a MedMNIST npz) or `flag` (e.g. pneumoniamnist) to download")
        if self.flag is not None:
            import medmnist

            if self.flag not in medmnist.INFO:
                raise ValueError(f"unknown MedMNIST flag {self.flag!r}; known: {', '.join(sorted(medmnist.INFO))}")
        return self


def download_medmnist(flag: str, size: int, root: Path | None) -> Path:
    """Fetch `flag` at `size` with the medmnist package (a no-op when the npz is already in `root`)."""
    import medmnist

    root = (root or Path.home() / ".medmnist").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    suffix = "" if size == 28 else f"_{size}"
    target = root / f"{flag}{suffix}.npz"
    if target.exists():
        return target
    dataset_class = getattr(medmnist, medmnist.INFO[flag]["python_class"])
    try:
        dataset_class(split="train", download=True, size=size, root=str(root))
    except Exception as error:  # network errors come in many types from urllib/requests
        raise DownloadError(
            f"could not download MedMNIST {flag!r} (size {size}) into {root}: {_first_line(error)}; "
            "give `path:` to a local npz instead"
        ) from None
    return target


def _first_line(error: Exception) -> str:
    """medmnist's download error spans a dozen lines; keep its first line and the file's URL."""
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    urls = re.findall(r"https?://\S+", text)
    url = next((u for u in urls if ".npz" in u), None)  # the file itself, not the project page
    return f"{first} ({url})" if url else first


def _known_flag(path: Path) -> str | None:
    import medmnist

    stem = path.stem.lower()
    matches = [flag for flag in medmnist.INFO if stem.startswith(flag)]
    return max(matches, key=len) if matches else None


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read npz archive ({error})") from None


def load_medmnist(cfg: MedmnistConfig) -> LabeledDataset:
    path = cfg.path or download_medmnist(cfg.flag, cfg.size, cfg.root)
    arrays = load_npz_arrays(path)
    if "train_images" not in arrays or "train_labels" not in arrays:
        raise DataError(f"{path}: not a MedMNIST npz (needs train_images/train_labels; has {sorted(arrays)})")
    flag = cfg.flag or _known_flag(path)
    parts: dict[str, Split] = {}
    for split in SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            raise DataError(f"{path}: {split}_images and {split}_labels must both be present")
        parts[split] = _split_from_arrays(path, split, images, labels)
    labels_all = np.concatenate([p.labels for p in parts.values()])
    task, class_names = _task_and_classes(cfg, flag, labels_all)
    if task is not Task.MULTILABEL:
        parts = {name: replace(p, labels=p.labels[:, 0].astype(np.int64)) for name, p in parts.items()}
    volumes = any(isinstance(p.images, ArrayVolumes) for p in parts.values())
    if cfg.volume is not None and not volumes:
        raise DataError(f"{path}: `volume` settings given but the npz holds 2D images")
    volume = (cfg.volume or VolumeConfig()) if volumes else None
    return assemble_dataset(cfg, task, class_names, parts, content_fingerprint(path), "official", volume)


def is_volume_set(images: np.ndarray) -> bool:
    """(N, D, H, W) volumes (MedMNIST 3D, e.g. 28^3 or 64^3) rather than (N, H, W, C) colour images."""
    return images.ndim == 5 or (images.ndim == 4 and images.shape[-1] not in (1, 3))


def _split_from_arrays(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> Split:
    if images.ndim == 5 and images.shape[1] == 1:  # (N, 1, D, H, W) channel-first volumes
        images = images[:, 0]
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: {split}_images has shape {images.shape}; expected (N, H, W[, C]) or (N, D, H, W)")
    volumes = is_volume_set(images)
    if images.ndim == 4 and images.shape[-1] == 1 and not volumes:
        images = images[..., 0]
    if len(labels) != len(images):
        raise DataError(f"{path}: {split} has {len(images)} images but {len(labels)} labels")
    labels = labels.reshape(len(labels), -1) if labels.ndim > 1 else labels.reshape(-1, 1)
    ids = np.array([f"{split}_{i}" for i in range(len(images))])
    source = ArrayVolumes(images) if volumes else ArrayImages(images)
    return Split(split, ids, ids.copy(), labels.astype(np.float32), source)


def _task_and_classes(cfg: MedmnistConfig, flag: str | None, labels: np.ndarray) -> tuple[Task, tuple[str, ...]]:
    import medmnist

    if np.isnan(labels).any():
        raise DataError(f"dataset {cfg.name!r}: labels contain NaN")
    info = medmnist.INFO.get(flag) if flag else None
    if labels.shape[1] > 1:
        task = cfg.task or Task.MULTILABEL
        if task is not Task.MULTILABEL:
            raise DataError(f"dataset {cfg.name!r}: labels have {labels.shape[1]} columns, so the task is multilabel")
        names = tuple(info["label"][str(i)] for i in range(labels.shape[1])) if info else tuple(
            str(i) for i in range(labels.shape[1])
        )
        return task, names
    values = labels[:, 0]
    if (values < 0).any() or (values != np.round(values)).any():
        raise DataError(f"dataset {cfg.name!r}: class labels must be non-negative integers")
    if info is not None:
        task = cfg.task or MEDMNIST_TASKS[info["task"]]
        names = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    else:
        task = infer_task(values, cfg.task)
        names = tuple(str(i) for i in range(int(values.max()) + 1))
    if values.max() >= len(names):
        raise DataError(f"dataset {cfg.name!r}: label {int(values.max())} is outside the {len(names)} classes")
    return task, names


ADAPTERS.add(
    "medmnist",
    Adapter("medmnist", MedmnistConfig, load_medmnist, "MedMNIST npz, 2D or 3D (train/val/test images+labels), any size"),
)

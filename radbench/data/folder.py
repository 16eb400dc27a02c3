"""`folder` adapter: one subfolder per class, optionally inside train/val/test folders."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from radbench.data.base import DatasetConfigBase, FileImages, LabeledDataset, Split, Task, file_fingerprint
from radbench.data.build import assemble_dataset
from radbench.data.csv_table import SPLIT_ALIASES
from radbench.data.readers import IMAGE_EXTENSIONS
from radbench.data.registry import ADAPTERS, Adapter
from radbench.errors import DataError


class FolderConfig(DatasetConfigBase):
    adapter: Literal["folder"]
    patient_regex: str | None = None  # applied to the file name; group 1 (or the whole match) is the patient id
    extensions: list[str] = list(IMAGE_EXTENSIONS)

    @field_validator("patient_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"invalid regular expression: {error}") from None
        return value


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path, extensions: list[str]) -> list[Path]:
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def load_folder(cfg: FolderConfig) -> LabeledDataset:
    root = cfg.path
    if not root.is_dir():
        raise DataError(f"{root}: the folder adapter needs a directory")
    top = _class_folders(root)
    split_dirs = {SPLIT_ALIASES[p.name.lower()]: p for p in top if p.name.lower() in SPLIT_ALIASES}
    if split_dirs and len(split_dirs) != len(top):
        others = [p.name for p in top if p.name.lower() not in SPLIT_ALIASES]
        raise DataError(f"{root}: mixes split folders with other folders ({', '.join(others)})")
    roots = split_dirs or {"all": root}
    class_names = sorted({p.name for r in roots.values() for p in _class_folders(r)})
    if len(class_names) < 2:
        raise DataError(f"{root}: found {len(class_names)} class folder(s); the folder adapter needs at least 2")
    pattern = re.compile(cfg.patient_regex) if cfg.patient_regex else None
    parts: dict[str, Split] = {}
    all_paths: list[Path] = []
    for split, split_root in roots.items():
        paths, labels = [], []
        for index, name in enumerate(class_names):
            class_dir = split_root / name
            found = _images_in(class_dir, cfg.extensions) if class_dir.is_dir() else []
            paths += found
            labels += [index] * len(found)
        if not paths:
            raise DataError(f"{split_root}: no images with extensions {', '.join(cfg.extensions)}")
        ids = np.array([str(p.relative_to(root)) for p in paths])
        patients = np.array([_patient(p, pattern, root) for p in paths]) if pattern else ids.copy()
        parts[split] = Split(split, ids, patients, np.array(labels, dtype=np.int64), FileImages(tuple(paths), cfg.intensity))
        all_paths += paths
    task = cfg.task or (Task.BINARY if len(class_names) == 2 else Task.MULTICLASS)
    if task is Task.MULTILABEL:
        raise DataError(f"dataset {cfg.name!r}: the folder adapter gives one class per image; use csv for multi-label")
    origin = "folders" if split_dirs else "generated"
    dataset = assemble_dataset(cfg, task, tuple(class_names), parts, file_fingerprint(all_paths), origin)
    if pattern is None:
        dataset = replace(dataset, notes=(*dataset.notes, "no patient_regex: each image is treated as its own patient"))
    return dataset


def _patient(path: Path, pattern: re.Pattern, root: Path) -> str:
    match = pattern.search(path.name)
    if match is None:
        raise DataError(f"{path}: file name does not match patient_regex {pattern.pattern!r}")
    return match.group(1) if pattern.groups else match.group(0)


ADAPTERS.add("folder", Adapter("folder", FolderConfig, load_folder, "one subfolder per class (optionally in train/val/test)"))

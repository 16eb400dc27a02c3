"""Reading every file the preprocessing cache does not cover — 3D volumes, segmentation masks and label maps —
once, before any model is built, so that a damaged file or a mask value outside the classes stops the run at
the start (naming the file), or is left out under `on_bad_file: skip`. The outcome is recorded per dataset
content, so a rerun on unchanged files reads nothing again."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from radbench import arrayfile
from radbench.errors import DataError
from radbench.progress import Reporter

CHECK_VERSION = 1


class _ReadOne:
    """Item i: (i, None) when the file reads, else (i, the DataError's message naming the file)."""

    def __init__(self, items: list[tuple[object, str, int]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        source, method, index = self.items[i]
        try:
            getattr(source, method)(index)
        except DataError as error:
            return i, " ".join(str(error).split())
        return i, None


def _files_to_read(split) -> list[tuple[object, str]]:
    """(source, method) of what a split reads outside the preprocessing cache."""
    out = []
    images = split.images
    if getattr(images, "is_volume", False) and not images.in_memory:
        out.append((images, "load_volume"))
    masks = getattr(split, "masks", None)
    if masks is not None and not getattr(masks, "in_memory", False):
        out.append((masks, "load_volume" if hasattr(masks, "load_volume") else "load"))
    return out


def check_files(dataset, on_bad_file: str, folder: Path, workers: int, reporter: Reporter):
    """The dataset with its unreadable cases left out (on_bad_file: skip), or a DataError naming them."""
    from torch.utils.data import DataLoader

    from radbench.features.cache import ids_digest, stable_hash

    reads = {name: _files_to_read(split) for name, split in dataset.splits.items()}
    if not any(reads.values()):
        return dataset
    key = stable_hash({"version": CHECK_VERSION, "data": dataset.fingerprint,
                       "sources": {name: [repr(source) for source, _ in found] for name, found in reads.items()},
                       "splits": {name: ids_digest(split.sample_ids) for name, split in dataset.splits.items()}})
    record = Path(folder) / f"{key}.json"
    try:
        bad = json.loads(record.read_text())
    except (OSError, ValueError):
        bad = {}
        for name, found in reads.items():
            items = [(source, method, index) for source, method in found for index in range(len(source))]
            loader = DataLoader(_ReadOne(items), batch_size=4, num_workers=workers, collate_fn=lambda x: x)
            problems: dict[int, str] = {}
            with reporter.task(f"  check files {dataset.name} / {name}", len(items)) as advance:
                for batch in loader:
                    for i, message in batch:
                        if message is not None:
                            problems.setdefault(items[i][2], message)
                    advance(len(batch))
            bad[name] = sorted([index, message] for index, message in problems.items())
        arrayfile.write_text(record, json.dumps(bad))
    found = [(name, index, message) for name, items in bad.items() for index, message in items]
    if not found:
        return dataset
    if on_bad_file == "error":
        listed = "; ".join(m for _, _, m in found[:5]) + (" ..." if len(found) > 5 else "")
        raise DataError(f"dataset {dataset.name!r}: {len(found)} file(s) that cannot be used: {listed} "
                        "(set `on_bad_file: skip` to leave them out)")
    reporter.warn(f"dataset {dataset.name}: {len(found)} unusable case(s) left out (on_bad_file: skip)")
    splits = {}
    for name, split in dataset.splits.items():
        drop = {index for index, _ in bad.get(name, [])}
        splits[name] = split.subset(np.array([i for i in range(len(split)) if i not in drop], dtype=np.int64))
    note = f"{len(found)} unusable cases left out: " + ", ".join(
        str(dataset.splits[n].sample_ids[i]) for n, i, _ in found)
    return replace(dataset, splits=splits, notes=(*dataset.notes, note))

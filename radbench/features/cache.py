"""On-disk feature cache: one dense array per split in a folder named by a content hash.

Folder `<hash>-L<n>` (token models; n = CLS tokens of the last n blocks held) or `<hash>-pool`. The hash
covers everything that changes the numbers: backbone weights identity, preprocessing, data files and sample
lists, extraction precision and storage dtype. Split arrays are checked array files (`radbench.arrayfile`:
atomic, with a record holding their checksum); the manifest is written last, so a killed extraction leaves no
half file, finished splits are kept, and a damaged split is found when the entry is opened."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from radbench import arrayfile
from radbench.backbones import BundleLayout
from radbench.features.source import FeatureSource

EXTRACTION_VERSION = 1  # bump when extraction code changes the numbers


def stable_hash(payload: object, length: int = 16) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


@dataclass
class CachedFeatures:
    folder: Path
    manifest: dict
    layout: BundleLayout

    @functools.cached_property
    def source(self) -> FeatureSource:
        """What every job on this entry reads: each split loaded once, shared by them all."""
        return FeatureSource(self.bundle, self.layout.columns)

    def bundle(self, split: str) -> np.ndarray:
        path = self.folder / f"{split}.npy"
        expected = self.manifest["splits"][split]
        record = arrayfile.verify(path, expected["n"])  # once per file and process
        wrong = bound_elsewhere(record, split, expected.get("ids_sha"))
        if wrong:
            raise arrayfile.DamagedArray(f"{path}: {wrong}")
        return np.load(path, mmap_mode="r")


def split_identity(split: str, sample_ids) -> dict:
    """What binds a cached array to its split: the split's name, size and sample list."""
    return {"split": split, "n": len(sample_ids), "ids_sha": ids_digest(sample_ids)}


def bound_elsewhere(record: dict, split: str, ids_sha: str | None) -> str:
    """Why an array's record belongs to another split ('' when it is this one's). Records written before arrays
    were bound (no split in them) are taken as they are."""
    meta = record.get("meta", {})
    if "split" not in meta:
        return ""
    if meta["split"] != split:
        return f"written for split {meta['split']!r}, not {split!r} (a copied or linked file)"
    if ids_sha is not None and meta.get("ids_sha") != ids_sha:
        return "written for another list of samples (a copied or linked file)"
    return ""


def _suffix(layout: BundleLayout) -> str:
    return (f"L{layout.n_last}" + ("e" if layout.embed else "")) if layout.kind == "tokens" else "pool"


class FeatureCache:
    """Entries are verified when found: a split array that does not match its record (or the split's size) is
    discarded and re-extracted, or stops the run under --no-repair; an unreadable manifest is rewritten."""

    def __init__(self, root: Path, warn: Callable[[str], None] = print):
        self.root = Path(root)
        self.warn = warn
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise arrayfile.write_error(self.root, error) from None
        arrayfile.clean_stale_temporaries(self.root)

    def find(self, key: str, blocks_needed: int, splits: dict[str, dict]) -> CachedFeatures | None:
        """A complete, intact entry for `key` holding at least `blocks_needed` CLS blocks (any pooled entry fits)."""
        best: CachedFeatures | None = None
        for folder in self.root.glob(f"{key}-*"):
            manifest = self._manifest(folder)
            if manifest is None:
                continue
            stored = BundleLayout(**manifest["layout"])
            if stored.kind == "tokens" and stored.n_last < min(blocks_needed, stored.depth or blocks_needed):
                continue
            if best is None or stored.n_last < best.layout.n_last:
                best = CachedFeatures(folder, manifest, stored)
        if best is None:
            return None
        intact = [self.split_intact(best.folder, split, identity) for split, identity in splits.items()]
        return best if all(intact) else None

    def _manifest(self, folder: Path) -> dict | None:
        path = folder / "manifest.json"
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
            BundleLayout(**manifest["layout"])
            return manifest
        except (ValueError, KeyError, TypeError):
            self.warn(f"{path}: unreadable manifest; checking the split arrays and writing it anew")
            path.unlink()
            return None

    def folder(self, key: str, layout: BundleLayout) -> Path:
        return self.root / f"{key}-{_suffix(layout)}"

    def split_intact(self, folder: Path, split: str, identity: dict) -> bool:
        """The split's array is intact and was written for this split's samples (split_identity); else False, the
        array discarded for re-extraction (or an error under --no-repair, as for a damaged one)."""
        path = folder / f"{split}.npy"
        if not arrayfile.is_intact(path, identity["n"], self.warn):
            return False
        wrong = bound_elsewhere(arrayfile.verify(path), split, identity.get("ids_sha"))
        if not wrong:
            return True
        if not arrayfile.repairing():
            raise arrayfile.DamagedArray(f"{path}: {wrong}; rerun without --no-repair to rebuild it")
        self.warn(f"{path}: {wrong}; discarding it and rebuilding")
        arrayfile.discard(path)
        return False

    def write_split(self, key: str, layout: BundleLayout, split: str, array: np.ndarray, dtype: str,
                    seconds: float, identity: dict | None = None) -> None:
        if dtype == "float16" and np.abs(array).max(initial=0.0) > np.finfo(np.float16).max:
            dtype = "float32"  # values beyond float16's range would become inf: keep them exact instead
        arrayfile.write(self.folder(key, layout) / f"{split}.npy", array.astype(dtype),
                        {"seconds": seconds, **(identity or {})})

    def finish(self, key: str, layout: BundleLayout, manifest: dict) -> CachedFeatures:
        """Write the manifest; `extract_seconds` covers every split, also those a previous run extracted."""
        folder = self.folder(key, layout)
        seconds = {split: arrayfile.verify(folder / f"{split}.npy")["meta"].get("seconds", 0.0)
                   for split in manifest["splits"]}
        manifest = {**manifest, "key": key, "layout": layout.identity(), "extract_seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        arrayfile.write_text(folder / "manifest.json", json.dumps(manifest, indent=1, default=str))
        return CachedFeatures(folder, manifest, layout)

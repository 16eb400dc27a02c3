"""On-disk feature cache: one dense array per split in a folder named by a content hash.

Folder `<hash>-L<n>` (token models; n = CLS tokens of the last n blocks held) or `<hash>-pool`. The hash
covers everything that changes the numbers: backbone weights identity, preprocessing, data files and sample
lists, extraction precision and storage dtype. Split arrays are written to a temporary name and renamed, and
the manifest is written last, so a killed extraction leaves no half file, and finished splits are kept."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radbench.backbones import BundleLayout

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

    def bundle(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"{split}.npy", mmap_mode="r")


def _suffix(layout: BundleLayout) -> str:
    return f"L{layout.n_last}" if layout.kind == "tokens" else "pool"


class FeatureCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def find(self, key: str, blocks_needed: int) -> CachedFeatures | None:
        """A complete entry for `key` holding at least `blocks_needed` CLS blocks (any pooled entry fits)."""
        best: CachedFeatures | None = None
        for folder in self.root.glob(f"{key}-*"):
            manifest_path = folder / "manifest.json"
            if not manifest_path.is_file():
                continue
            manifest = json.loads(manifest_path.read_text())
            stored = BundleLayout(**manifest["layout"])
            if stored.kind == "tokens" and stored.n_last < min(blocks_needed, stored.depth or blocks_needed):
                continue
            if best is None or stored.n_last < best.layout.n_last:
                best = CachedFeatures(folder, manifest, stored)
        return best

    def folder(self, key: str, layout: BundleLayout) -> Path:
        return self.root / f"{key}-{_suffix(layout)}"

    def has_split(self, key: str, layout: BundleLayout, split: str) -> bool:
        return (self.folder(key, layout) / f"{split}.npy").is_file()

    def write_split(self, key: str, layout: BundleLayout, split: str, array: np.ndarray, dtype: str) -> None:
        folder = self.folder(key, layout)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{split}.{socket.gethostname()}.{os.getpid()}.tmp.npy"
        if dtype == "float16" and np.abs(array).max(initial=0.0) > np.finfo(np.float16).max:
            dtype = "float32"  # values beyond float16's range would become inf: keep them exact instead
        with open(temporary, "wb") as handle:
            np.save(handle, array.astype(dtype))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, folder / f"{split}.npy")

    def finish(self, key: str, layout: BundleLayout, manifest: dict) -> CachedFeatures:
        folder = self.folder(key, layout)
        manifest = {**manifest, "key": key, "layout": layout.identity(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        temporary = folder / f".manifest.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(manifest, indent=1, default=str))
        os.replace(temporary, folder / "manifest.json")
        return CachedFeatures(folder, manifest, layout)

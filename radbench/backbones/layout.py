"""Which columns of a cached feature bundle make up each feature type.

A token model's bundle is [CLS of block L-n+1, ..., CLS of block L, mean patch token of block L] (all after
the final norm, as in DINOv2's linear eval); every feature type is a column selection, so one backbone pass
serves cls, mean, cls+mean, lastN and lastN+mean. CLIP-style towers append their projected image embedding
("embed": the last CLS through the tower's projection). Pooled models (CNNs, ViTs without a CLS token) store the
global pooled vector, and every requested type resolves to it ("pool")."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from radbench.errors import BackboneError


@dataclass(frozen=True)
class BundleLayout:
    kind: Literal["tokens", "pooled"]
    dim: int
    n_last: int = 1  # CLS tokens of this many last blocks (tokens only)
    parts: int = 1  # volumes aggregated as mean and max: the bundle repeats once per aggregate
    depth: int | None = None  # the model's number of blocks (tokens only): lets blockK name a block
    embed: int = 0  # width of the projected image embedding at the end of each part (CLIP-style towers)

    @property
    def part_width(self) -> int:
        return ((self.n_last + 1) * self.dim if self.kind == "tokens" else self.dim) + self.embed

    @property
    def width(self) -> int:
        return self.parts * self.part_width

    def identity(self) -> dict:
        identity = asdict(self)
        if not self.embed:
            del identity["embed"]  # layouts without it read and write as before `embed` existed
        return identity

    def resolve(self, feature_type: str) -> str:
        """The feature type actually served (pooled models serve `pool` for every request)."""
        if self.kind == "pooled":
            return "pool"
        if feature_type == "pool":
            raise BackboneError("feature type 'pool' is for pooled backbones; token models use cls/mean/lastN")
        if feature_type == "embed" and not self.embed:
            raise BackboneError("feature type 'embed' is the projected embedding of CLIP-style towers; this backbone "
                                "has none")
        return feature_type

    def columns(self, feature_type: str) -> np.ndarray:
        single = self._part_columns(self.resolve(feature_type))
        return np.concatenate([single + part * self.part_width for part in range(self.parts)])

    def _part_columns(self, feature_type: str) -> np.ndarray:
        if self.kind == "pooled":
            return np.arange(self.dim)
        if feature_type == "embed":
            start = (self.n_last + 1) * self.dim
            return np.arange(start, start + self.embed)
        if feature_type.startswith("block"):
            return self._block_columns(int(feature_type[5:]))
        blocks = blocks_needed(feature_type)
        if blocks > self.n_last:
            raise BackboneError(f"feature type {feature_type!r} needs {blocks} blocks; bundle holds {self.n_last}")
        parts = []
        if feature_type != "mean":
            first = self.n_last - blocks
            parts.append(np.arange(first * self.dim, self.n_last * self.dim))
        if feature_type == "mean" or feature_type.endswith("+mean"):
            parts.append(np.arange(self.n_last * self.dim, (self.n_last + 1) * self.dim))
        return np.concatenate(parts)


    def _block_columns(self, block: int) -> np.ndarray:
        """CLS token of block `block` (1-based), normed like the others: what a decapitated model outputs."""
        if self.depth is None or not 1 <= block <= self.depth:
            raise BackboneError(f"feature type 'block{block}': the model has {self.depth} blocks")
        position = block - (self.depth - self.n_last) - 1
        if position < 0:
            raise BackboneError(f"feature type 'block{block}' needs all {self.depth} blocks; bundle holds {self.n_last}")
        return np.arange(position * self.dim, (position + 1) * self.dim)


ALL_BLOCKS = 10**6  # blocks_needed of blockK: the bundle must hold every block


def blocks_needed(feature_type: str) -> int:
    """How many last blocks' CLS tokens a feature type reads (0 for mean/pool; every block for blockK)."""
    if feature_type in ("mean", "pool", "embed"):
        return 0
    if feature_type.startswith("block"):
        return ALL_BLOCKS
    if feature_type.startswith("cls"):
        return 1
    match = re.match(r"last(\d+)", feature_type)
    return int(match.group(1)) if match else 1

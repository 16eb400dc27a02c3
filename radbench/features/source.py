"""What protocols read: per split a feature bundle, and per feature type its columns in that bundle."""

from __future__ import annotations

from typing import Callable

import numpy as np


class FeatureSource:
    """Float32 copies of a (memory-mapped) bundle, loaded once per split and shared by every job on it."""

    def __init__(self, load_bundle: Callable[[str], np.ndarray], columns: Callable[[str], np.ndarray]):
        self._load_bundle = load_bundle
        self._columns = columns
        self._bundles: dict[str, np.ndarray] = {}
        self._features: dict[tuple[str, str], np.ndarray] = {}

    def bundle(self, split: str) -> np.ndarray:
        if split not in self._bundles:
            self._bundles[split] = np.asarray(self._load_bundle(split), dtype=np.float32)
        return self._bundles[split]

    def columns(self, feature_type: str) -> np.ndarray:
        return self._columns(feature_type)

    def get(self, feature_type: str, split: str) -> np.ndarray:
        key = (feature_type, split)
        if key not in self._features:
            columns = self.columns(feature_type)
            bundle = self.bundle(split)
            self._features[key] = bundle if len(columns) == bundle.shape[1] and (
                columns == np.arange(bundle.shape[1])).all() else bundle[:, columns]
        return self._features[key]

    @classmethod
    def from_arrays(cls, arrays: dict[str, dict[str, np.ndarray]]) -> "FeatureSource":
        """Separate arrays per feature type ({type: {split: array}}), laid side by side as one bundle."""
        types = list(arrays)
        offsets = np.cumsum([0] + [next(iter(arrays[t].values())).shape[1] for t in types])
        columns = {t: np.arange(offsets[i], offsets[i + 1]) for i, t in enumerate(types)}
        splits = next(iter(arrays.values())).keys()
        bundles = {s: np.concatenate([arrays[t][s] for t in types], axis=1) for s in splits}
        return cls(bundles.__getitem__, columns.__getitem__)

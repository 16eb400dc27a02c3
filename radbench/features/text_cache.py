"""Text embeddings of prompts, cached by (the backbone's weights identity, the prompt's text): changing a prompt
recomputes that prompt only, and the text tower is built only when some prompt is missing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from radbench.features.cache import stable_hash


class TextEncoder:
    def __init__(self, backbone_cfg, identity: dict, folder: Path, image_size: int | None = None):
        self.backbone_cfg, self.folder, self.image_size = backbone_cfg, Path(folder), image_size
        # random weights depend on the model's image size (the seed draws the image tower first): part of the key
        self.identity = {**identity, "image_size": image_size} if backbone_cfg.weights_kind == "none" else identity
        self._tower = None
        self._scale: tuple[float, float | None] | None = None
        self.computed = 0  # prompts passed through the text tower by this encoder (the rest came from the cache)

    def _path(self, prompt: str) -> Path:
        return self.folder / f"{stable_hash({'weights': self.identity, 'prompt': prompt}, length=24)}.npy"

    def _load_tower(self):
        if self._tower is None:
            from radbench.backbones.text import build_text_tower

            self._tower = build_text_tower(self.backbone_cfg, self.image_size)
        return self._tower

    def embed(self, prompts: list[str]) -> np.ndarray:
        """(N, D) float32 embeddings, in the order of `prompts`."""
        paths = [self._path(p) for p in prompts]
        missing = [i for i, path in enumerate(paths) if not path.is_file()]
        if missing:
            computed = self._load_tower().encode([prompts[i] for i in missing]).astype(np.float32)
            self.folder.mkdir(parents=True, exist_ok=True)
            for row, i in zip(computed, missing):
                temporary = paths[i].with_suffix(f".{os.getpid()}.tmp")
                with open(temporary, "wb") as handle:
                    np.save(handle, row)
                os.replace(temporary, paths[i])
            self.computed += len(missing)
        return np.stack([np.load(path) for path in paths])

    def _scales(self) -> tuple[float, float | None]:
        if self._scale is None:
            path = self.folder / f"{stable_hash({'weights': self.identity, 'scale': True}, length=24)}.npy"
            if path.is_file():
                scale, bias = np.load(path)
                self._scale = (float(scale), None if np.isnan(bias) else float(bias))
            else:
                tower = self._load_tower()
                self._scale = (tower.logit_scale, tower.logit_bias)
                self.folder.mkdir(parents=True, exist_ok=True)
                np.save(path, np.array([tower.logit_scale, np.nan if tower.logit_bias is None else tower.logit_bias]))
        return self._scale

    @property
    def logit_scale(self) -> float:
        return self._scales()[0]

    @property
    def logit_bias(self) -> float | None:
        return self._scales()[1]

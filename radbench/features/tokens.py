"""Frozen token maps: the last block's tokens (normed) of every image, cached on disk as float16 when they fit
a disk budget, else recomputed from the frozen backbone batch by batch. A transformer head (and dense
decoders) read them through the same Dataset interface either way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from radbench import arrayfile
from radbench.backbones import FeatureBackbone
from radbench.data.base import LabeledDataset
from radbench.data.transforms import Preprocess
from radbench.device import autocast
from radbench.features.extract import PreprocessedImages, default_workers
from radbench.progress import Reporter


def frozen_tokens(backbone: FeatureBackbone, images: torch.Tensor) -> torch.Tensor:
    """(B, T, D): the last block's normed tokens (prefix tokens first) for ViTs; spatial positions for CNNs."""
    out = backbone.model.forward_features(images)
    return out.flatten(2).transpose(1, 2) if out.ndim == 4 else out


@torch.no_grad()
def token_shape(backbone: FeatureBackbone, image_size: int, device: torch.device) -> tuple[int, int]:
    backbone.model.to(device)
    return tuple(frozen_tokens(backbone, torch.zeros(1, 3, image_size, image_size, device=device)).shape[1:])


class CachedTokens(Dataset):
    """(tokens (T, D) float32, target) from memory-mapped float16 arrays, one or more splits in a row."""

    def __init__(self, paths: list[Path], targets: np.ndarray):
        self.paths = paths
        self.lengths = [np.load(p, mmap_mode="r").shape[0] for p in paths]
        self.targets = torch.from_numpy(np.asarray(targets, dtype=np.float32))

    def __len__(self) -> int:
        return sum(self.lengths)

    def __getitem__(self, index: int):
        position = index
        for path, length in zip(self.paths, self.lengths):
            if position < length:
                tokens = np.asarray(np.load(path, mmap_mode="r")[position], dtype=np.float32)
                return torch.from_numpy(tokens), self.targets[index]
            position -= length
        raise IndexError(index)


@dataclass
class TokenStore:
    """Per split either a cached token Dataset, or None (recompute: the model must embed images itself);
    `ms_per_image`: the frozen backbone's cost of making one image's tokens (measured when cached)."""

    cached: dict[str, Path] | None
    shape: tuple[int, int]
    ms_per_image: float = 0.0

    def dataset(self, splits: list[str], targets: np.ndarray) -> Dataset:
        return CachedTokens([self.cached[s] for s in splits], targets)


@torch.inference_mode()
def token_store(backbone: FeatureBackbone, dataset: LabeledDataset, preprocess: Preprocess, folder: Path,
                budget_gb: float, device: torch.device, precision: str, batch_size: int, reporter: Reporter) -> TokenStore:
    shape = token_shape(backbone, preprocess.image_size, device)
    total = sum(len(s) for s in dataset.splits.values()) * shape[0] * shape[1] * 2
    if total > budget_gb * 2**30:
        reporter.info(f"  tokens: {total / 2**30:.1f} GiB exceed the {budget_gb} GiB budget; recomputing each epoch")
        return TokenStore(None, shape)
    cached, seconds = {}, []
    for name, split in dataset.splits.items():
        target = folder / f"{name}.npy"
        if not arrayfile.is_intact(target, len(split), reporter.warn):
            start = time.perf_counter()
            with arrayfile.filling(target, np.float16, (len(split), *shape)) as fill:
                loader = DataLoader(PreprocessedImages(split.images, preprocess), batch_size=batch_size,
                                    num_workers=default_workers(split.images))
                position = 0
                with reporter.task(f"  tokens {dataset.name} / {name}", len(split)) as advance:
                    for batch in loader:
                        with autocast(device, precision):
                            tokens = frozen_tokens(backbone, batch.to(device)).float().cpu().numpy()
                        fill.array[position:position + len(tokens)] = tokens
                        position += len(tokens)
                        advance(len(tokens))
                fill.meta = {"ms_per_image": 1000 * (time.perf_counter() - start) / max(1, len(split))}
        seconds.append(arrayfile.verify(target)["meta"].get("ms_per_image", 0.0))
        cached[name] = target
    reporter.info(f"  tokens: {total / 2**30:.2f} GiB cached in {folder.name}")
    return TokenStore(cached, shape, float(np.mean(seconds)))

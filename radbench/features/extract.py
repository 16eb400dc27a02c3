"""Batched feature extraction: one backbone pass per image, bf16 autocast on CUDA, progress bar."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from radbench.backbones import BundleLayout, FeatureBackbone
from radbench.data.base import ImageSource
from radbench.data.precache import PrecachedImages
from radbench.data.transforms import Preprocess
from radbench.data.volumes import VolumeConfig, slice_images
from radbench.device import autocast
from radbench.errors import BackboneError, DataError
from radbench.progress import Reporter


class PreprocessedImages(Dataset):
    def __init__(self, images: ImageSource, preprocess: Preprocess):
        self.images = images
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.preprocess(self.images.load(index))


class CachedBatches(Dataset):
    """Whole batches straight from the preprocessing cache's memory-mapped array, still uint8/uint16 (a quarter of
    float32's bytes to move to the GPU): no per-image Python work; normalised on the device (`to_model_input`)."""

    def __init__(self, images, batch_size: int):
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> torch.Tensor:
        rows = self.images.indices[index * self.batch_size:(index + 1) * self.batch_size]
        return torch.from_numpy(np.ascontiguousarray(self.images._array()[rows]))


def to_model_input(raw: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """(B, S, S) or (B, S, S, 3) quantised images -> normalised (B, 3, S, S) float32, the same numbers the per-image
    path (PrecachedImages.load, then Preprocess) gives."""
    x = raw.float() / float(torch.iinfo(raw.dtype).max)
    x = x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    mean = torch.tensor(preprocess.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def default_workers_for_files(main_busy: bool = True) -> int:
    """Decoding workers: a core is left to the main process where it runs the model (extraction), not where it
    only copies decoded images (the first pass over raw files)."""
    return min(8, max(1, (os.cpu_count() or 2) - (1 if main_busy else 0)))


def default_workers(images: ImageSource) -> int:
    """Decoding files benefits from workers; in-memory arrays do not."""
    return 0 if images.in_memory else default_workers_for_files()


class VolumeSlices(Dataset):
    """One item per volume: its sampled slices, preprocessed, as a (K, 3, S, S) tensor."""

    def __init__(self, volumes, volume_cfg: VolumeConfig, preprocess: Preprocess):
        self.volumes, self.volume_cfg, self.preprocess = volumes, volume_cfg, preprocess

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> torch.Tensor:
        slices = slice_images(self.volumes.load_volume(index), self.volume_cfg)
        return torch.stack([self.preprocess(image) for image in slices])


@contextlib.contextmanager
def _clean_worker_errors():
    """DataLoader workers re-raise our DataError with the worker's traceback folded into the message;
    keep the error's own text (it names the bad file), on one line."""
    try:
        yield
    except DataError as error:
        raise DataError(worker_error_text(str(error))) from None


def worker_error_text(message: str) -> str:
    """The DataError's own message out of a DataLoader worker's re-raised text, whitespace folded to one line."""
    own = message.rsplit("DataError: ", 1)[-1]
    return " ".join(own.split())


def _run(rows: int, width: int, loader, embed, reporter: Reporter, description: str) -> np.ndarray:
    """Fill an (rows, width) array from `embed(item) -> (n, width)` over the loader, with a progress bar."""
    out = np.empty((rows, width), dtype=np.float32)
    position = 0
    with reporter.task(description, rows) as advance, _clean_worker_errors():
        for item in loader:
            features = embed(item)
            out[position:position + len(features)] = features
            position += len(features)
            advance(len(features))
    if not np.isfinite(out).all():
        raise BackboneError(f"{description.strip()}: the backbone produced NaN or infinite features "
                            "(weights broken, or bf16 overflow: try `precision: fp32`)")
    return out


@torch.inference_mode()
def extract_bundle(
    backbone: FeatureBackbone,
    layout: BundleLayout,
    images: ImageSource,
    preprocess: Preprocess,
    *,
    device: torch.device,
    precision: str,
    batch_size: int,
    num_workers: int | None,
    reporter: Reporter,
    description: str,
) -> np.ndarray:
    model = backbone.model.to(device)
    channels_last = device.type == "cuda" and backbone.layout_kind == "pooled"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    cuda = device.type == "cuda"
    cached = (isinstance(images, PrecachedImages) and preprocess.quantize is not None
              and images._array().shape[1] == preprocess.image_size)
    if cached:  # batches of the cache array, prefetched by a worker on CUDA (reading overlaps the forward pass)
        workers = (2 if cuda else 0) if num_workers is None else num_workers
        loader = DataLoader(CachedBatches(images, batch_size), batch_size=None, num_workers=workers, pin_memory=cuda,
                            prefetch_factor=4 if workers else None)
    else:
        workers = default_workers(images) if num_workers is None else num_workers
        loader = DataLoader(PreprocessedImages(images, preprocess), batch_size=batch_size, shuffle=False,
                            num_workers=workers, pin_memory=cuda)

    def embed(batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(device, non_blocking=True)
        if cached:
            batch = to_model_input(batch, preprocess)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            return backbone.forward_bundle(batch, layout).float().cpu().numpy()

    return _run(len(images), layout.width, loader, embed, reporter, description)


@torch.inference_mode()
def extract_volume_bundle(
    backbone: FeatureBackbone,
    layout: BundleLayout,
    volumes,
    volume_cfg: VolumeConfig,
    preprocess: Preprocess,
    *,
    device: torch.device,
    precision: str,
    batch_size: int,
    num_workers: int | None,
    reporter: Reporter,
    description: str,
) -> np.ndarray:
    """Slice features aggregated per volume: (N_volumes, layout.width); mean and/or max over the slices."""
    backbone.model.to(device)
    workers = default_workers(volumes) if num_workers is None else num_workers
    loader = DataLoader(VolumeSlices(volumes, volume_cfg, preprocess), batch_size=None, shuffle=False,
                        num_workers=workers)
    single = replace(layout, parts=1)

    def embed(stack: torch.Tensor) -> np.ndarray:
        features = []
        for chunk in stack.split(batch_size):
            with autocast(device, precision):
                features.append(backbone.forward_bundle(chunk.to(device), single).float().cpu())
        features = torch.cat(features)
        parts = {"mean": [features.mean(0)], "max": [features.amax(0)],
                 "mean+max": [features.mean(0), features.amax(0)]}[volume_cfg.aggregate]
        return torch.cat(parts).numpy()[None]

    return _run(len(volumes), layout.width, loader, embed, reporter, description)

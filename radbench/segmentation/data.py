"""Training samples for segmentation: 2D images with their masks, or the slices of volumes with the slices of
their label maps; optionally served from cached frozen feature taps (float16, within a disk budget)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from radbench import arrayfile
from radbench.data.segmentation import SegSplit
from radbench.data.transforms import Preprocess
from radbench.data.volumes import VolumeConfig, oriented_stack, sample_indices, slice_images
from radbench.device import autocast
from radbench.progress import Reporter


class SegmentationSamples(Dataset):
    """(normalised image (3, S, S), mask (S, S) long) per image, or per sampled slice of each volume."""

    def __init__(self, splits: list[SegSplit], preprocess: Preprocess, volume: VolumeConfig | None):
        self.splits, self.preprocess, self.volume = splits, preprocess, volume
        self.items: list[tuple[int, int, int | None]] = []
        for s, split in enumerate(splits):
            for case in range(len(split)):
                if volume is None:
                    self.items.append((s, case, None))
                else:
                    count = len(oriented_stack(split.masks.load_volume(case).array, volume.axis))
                    self.items += [(s, case, int(k)) for k in sample_indices(count, volume)]

    def __len__(self) -> int:
        return len(self.items)

    def image_and_mask(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        s, case, k = self.items[index]
        split = self.splits[s]
        if k is None:
            return split.images.load(case), split.masks.load(case)
        image = slice_images(split.images.load_volume(case), self.volume, np.array([k]))[0]
        mask = oriented_stack(split.masks.load_volume(case).array, self.volume.axis)[k]
        return image, mask

    def __getitem__(self, index: int):
        # the image may come from the preprocessing cache, already at the input size; the mask is at the
        # original size, whose shape decides where it lands on the input grid (the loader checked the sizes)
        image, mask = self.image_and_mask(index)
        return self.preprocess(image), self.preprocess.fit_mask(mask)


class CachedTapSamples(Dataset):
    """((taps, image), mask): frozen taps read from memory-mapped float16 arrays instead of the backbone."""

    def __init__(self, samples: SegmentationSamples, folder: Path, tap_count: int):
        self.samples, self.folder, self.tap_count = samples, folder, tap_count

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image, mask = self.samples[index]
        taps = [torch.from_numpy(np.array(np.load(self.folder / f"tap{t}.npy", mmap_mode="r")[index]))
                for t in range(self.tap_count)]
        return (taps, image), mask


@torch.inference_mode()
def cache_taps(samples: SegmentationSamples, trunk, indices: list[int], folder: Path, budget_gb: float,
               device: torch.device, precision: str, batch_size: int, reporter: Reporter,
               description: str) -> CachedTapSamples | None:
    """Frozen taps of every sample on disk (float16), or None when they would exceed the budget."""
    from radbench.segmentation.decoders import dense_taps

    done = folder / "done.json"
    paths = [folder / f"tap{t}.npy" for t in range(len(indices))]
    if done.is_file() and all(arrayfile.is_intact(path, len(samples), reporter.warn) for path in paths):
        reporter.info(f"  {description}: frozen feature maps from the cache ({folder.name})")
        return CachedTapSamples(samples, folder, len(indices))
    done.unlink(missing_ok=True)
    trunk.to(device).eval()
    probe = dense_taps(trunk, samples[0][0][None].to(device), indices)
    size = len(samples) * sum(t[0].numel() for t in probe) * 2
    if size > budget_gb * 2**30:
        reporter.info(f"  {description}: feature maps need {size / 2**30:.1f} GiB > budget {budget_gb} GiB; "
                      "recomputing the backbone every epoch")
        return None
    with contextlib.ExitStack() as stack:
        fills = [stack.enter_context(arrayfile.filling(path, np.float16, (len(samples), *tap.shape[1:])))
                 for path, tap in zip(paths, probe)]
        loader = DataLoader(samples, batch_size=batch_size, shuffle=False)
        position = 0
        with reporter.task(f"  {description}: caching feature maps ({size / 2**30:.2f} GiB)", len(samples)) as advance:
            for images, _ in loader:
                with autocast(device, precision):
                    taps = dense_taps(trunk, images.to(device), indices)
                for fill, tap in zip(fills, taps):
                    fill.array[position:position + len(images)] = tap.float().cpu().numpy()
                position += len(images)
                advance(len(images))
    done.write_text(json.dumps({"samples": len(samples), "bytes": size}))
    return CachedTapSamples(samples, folder, len(indices))

"""Unlabelled images for pretraining: any dataset adapter (labels ignored, chosen splits only) or a plain folder
of images, decoded once into the preprocessing cache; then a seeded order over epochs that a resumed run
continues exactly where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from radbench.data import load_dataset
from radbench.data.base import FileImages, LabeledDataset, Split, Task, file_fingerprint
from radbench.data.precache import PrecachedImages, precache_dataset
from radbench.data.transforms import Preprocess
from radbench.errors import DataError
from radbench.pretrain.views import ViewMaker
from radbench.progress import Reporter
from radbench.training.augment import sample_seed


def _plain_folder(cfg) -> LabeledDataset | None:
    """A `folder` entry without class folders is a folder of unlabelled images: all of them, one split."""
    from radbench.data.folder import _class_folders, _images_in

    if cfg.adapter != "folder" or not Path(cfg.path).is_dir() or len(_class_folders(Path(cfg.path))) >= 2:
        return None
    paths = _images_in(Path(cfg.path), cfg.extensions)
    if not paths:
        raise DataError(f"{cfg.path}: no images with extensions {', '.join(cfg.extensions)}")
    ids = np.array([str(p.relative_to(cfg.path)) for p in paths])
    split = Split("train", ids, ids.copy(), np.zeros(len(paths), dtype=np.int64), FileImages(tuple(paths), cfg.intensity))
    return LabeledDataset(cfg.name, Task.MULTICLASS, ("unlabelled",), {"train": split}, file_fingerprint(paths),
                          "unlabelled folder")


def gather_images(dataset_cfgs: list, splits: list[str], preprocess: Preprocess, cache_root: Path, dtype: str,
                  workers: int, reporter: Reporter) -> list[PrecachedImages]:
    """Every entry's chosen splits, read from the preprocessing cache (built when missing)."""
    sources = []
    for cfg in dataset_cfgs:
        dataset = _plain_folder(cfg) or load_dataset(cfg)
        if dataset.split_origin != "unlabelled folder":
            dataset = replace(dataset, splits={k: v for k, v in dataset.splits.items() if k in splits})
        if getattr(dataset, "volume", None) is not None:
            raise DataError(f"data {cfg.name!r}: 3D volumes are not supported for pretraining yet (2D images only)")
        cached, _ = precache_dataset(dataset, preprocess, cache_root, dtype, "on", cfg.on_bad_file, workers, reporter)
        for name, split in cached.splits.items():
            if not isinstance(split.images, PrecachedImages):
                raise DataError(f"data {cfg.name!r}: split {name} could not be cached as 2D images")
            reporter.info(f"pretraining data {cfg.name} / {name}: {len(split)} images")
            sources.append(split.images)
    if sum(len(s) for s in sources) == 0:
        raise DataError("no pretraining images found in `data` (splits: " + ", ".join(splits) + ")")
    return sources


@dataclass
class Schedule:
    """Steps over a seeded per-epoch order of n images (the last incomplete batch of an epoch is dropped)."""

    n_images: int
    batch_size: int
    epochs: int
    seed: int

    def __post_init__(self):
        if self.n_images < self.batch_size:
            raise DataError(f"{self.n_images} pretraining images: fewer than one batch of {self.batch_size}; "
                            "lower batch_size or add images")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_images // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_images)

    def batch_positions(self, step: int, rank: int = 0, world: int = 1) -> list[int]:
        """Global positions (epoch * n + place in that epoch's order) of this rank's share of the step's batch."""
        epoch, within = divmod(step, self.steps_per_epoch)
        start = epoch * self.n_images + within * self.batch_size
        return list(range(start, start + self.batch_size))[rank::world]


class ViewDataset(Dataset):
    """Global position -> that image's views (the image chosen by the epoch's order, views by its own seed)."""

    def __init__(self, sources: list[PrecachedImages], schedule: Schedule, views: ViewMaker):
        self.sources, self.schedule, self.views = sources, schedule, views
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.schedule.n_images * self.schedule.epochs

    def image(self, index: int) -> torch.Tensor:
        source = int(np.searchsorted(self.offsets, index, side="right") - 1)
        array = self.sources[source].load(index - int(self.offsets[source]))  # (S, S[, 3]) float in [0, 1]
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)

    def __getitem__(self, position: int) -> list[torch.Tensor]:
        epoch, place = divmod(int(position), self.schedule.n_images)
        if epoch not in self._orders:
            self._orders = {epoch: self.schedule.order(epoch)}
        index = int(self._orders[epoch][place])
        return self.views(self.image(index), sample_seed(self.schedule.seed, epoch, place))


def collate_views(samples: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per view, the batch: [(B, 3, S_v, S_v) for each view]."""
    return [torch.stack(view) for view in zip(*samples)]

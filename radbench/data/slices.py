"""3D classification read slice-wise, for protocols that train on images (fine-tuning, LoRA, BitFit, progressive
freezing, transformer heads): each sampled slice is a training image carrying its volume's label, and a
volume's score is the aggregate of its slices' scores (the dataset's `aggregate`: mean, max, or the mean of the
two), so that models are trained on slices and scored per volume, as the frozen protocols are."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from radbench.data.volumes import VolumeConfig, sample_indices, slice_images


@dataclass(frozen=True)
class SliceImages:
    """The sampled slices of a volume source as a 2D image source: item i is (volume, slice) items[i]."""

    volumes: object  # ArrayVolumes / FileVolumes
    cfg: VolumeConfig
    items: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> np.ndarray:
        volume, k = self.items[index]
        return slice_images(self.volumes.load_volume(volume), self.cfg, np.array([k]))[0]

    def subset(self, indices: np.ndarray) -> "SliceImages":
        return SliceImages(self.volumes, self.cfg, tuple(self.items[int(i)] for i in indices))

    @property
    def in_memory(self) -> bool:
        return self.volumes.in_memory


@dataclass(frozen=True)
class SliceView:
    """A volume dataset seen slice by slice, with each slice's volume per split."""

    dataset: object  # the LabeledDataset whose splits hold SliceImages
    volume_of: dict[str, np.ndarray]  # split -> (slices,) index of each slice's volume
    aggregate: str

    def item_targets(self, targets: np.ndarray, split: str) -> np.ndarray:
        return targets[self.volume_of[split]]

    def per_volume(self, scores: np.ndarray, split: str) -> np.ndarray:
        """(slices, C) scores -> (volumes, C): mean, max, or the mean of both over each volume's slices."""
        owner = self.volume_of[split]
        count = int(owner.max()) + 1 if len(owner) else 0
        mean = np.zeros((count, scores.shape[1]))
        np.add.at(mean, owner, scores)
        mean /= np.bincount(owner, minlength=count)[:, None]
        if self.aggregate == "mean":
            return mean
        peak = np.full((count, scores.shape[1]), -np.inf)
        np.maximum.at(peak, owner, scores)
        return peak if self.aggregate == "max" else (mean + peak) / 2


def slice_view(dataset) -> SliceView:
    cfg = dataset.volume
    splits, volume_of = {}, {}
    for name, split in dataset.splits.items():
        items = [(v, int(k)) for v in range(len(split.images))
                 for k in sample_indices(_slice_count(split.images, v, cfg), cfg)]
        owner = np.array([v for v, _ in items], dtype=np.int64)
        source = SliceImages(split.images, cfg, tuple(items))
        splits[name] = replace(split, sample_ids=np.array([f"{split.sample_ids[v]}#{k}" for v, k in items]),
                               patient_ids=split.patient_ids[owner], labels=split.labels[owner], images=source,
                               groups={column: values[owner] for column, values in split.groups.items()})
        volume_of[name] = owner
    return SliceView(replace(dataset, splits=splits), volume_of, cfg.aggregate)


def _slice_count(volumes, index: int, cfg: VolumeConfig) -> int:
    from radbench.data.volumes import oriented_stack

    return len(oriented_stack(volumes.load_volume(index).array, cfg.axis))

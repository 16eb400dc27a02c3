"""Features for a (backbone, dataset): from the cache when present, else extracted once and cached."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from radbench.backbones import BackboneConfig, BackboneDescription, FeatureBackbone, build_backbone
from radbench.data.base import LabeledDataset
from radbench.data.transforms import Preprocess
from radbench.distributed import Ranks
from radbench.features.cache import (
    EXTRACTION_VERSION,
    CachedFeatures,
    FeatureCache,
    ids_digest,
    split_identity,
    stable_hash,
)
from radbench.features.extract import extract_bundle, extract_volume_bundle
from radbench.progress import Reporter


def feature_key(description: BackboneDescription, preprocess: Preprocess, dataset: LabeledDataset,
                dtype: str, precision: str) -> str:
    """Content hash of everything that changes the cached numbers (not names: renaming reuses the cache)."""
    crop_fix = {"crop_once": True} if preprocess.mode == "crop" and preprocess.quantize else {}
    return stable_hash({
        **crop_fix,  # images cropped once from the preprocessing cache (earlier they were cropped twice)
        "version": EXTRACTION_VERSION,
        "backbone": description.identity,
        "preprocess": preprocess.identity(),
        "volume": dataset.volume.model_dump(mode="json") if dataset.volume else None,
        "data": dataset.fingerprint,
        "splits": {name: ids_digest(split.sample_ids) for name, split in dataset.splits.items()},
        "dtype": dtype,
        "precision": precision,
    })


@dataclass
class Extraction:
    backbone: str
    dataset: str
    split: str
    images: int
    seconds: float


@dataclass
class FeatureProvider:
    cache: FeatureCache
    device: torch.device
    precision: str
    dtype: str
    batch_size: int
    num_workers: int | None
    reporter: Reporter
    ranks: Ranks = field(default_factory=Ranks)  # under torchrun: each rank extracts its share, rank 0 writes
    extractions: list[Extraction] = field(default_factory=list)
    _built: dict[tuple[str, int], FeatureBackbone] = field(default_factory=dict)

    def get(self, cfg: BackboneConfig, description: BackboneDescription, dataset: LabeledDataset,
            preprocess: Preprocess, blocks_needed: int) -> CachedFeatures:
        key = feature_key(description, preprocess, dataset, self.dtype, self.precision)
        splits = {name: split_identity(name, split.sample_ids) for name, split in dataset.splits.items()}
        cached = self.cache.find(key, blocks_needed, splits)
        if cached is not None:
            self.reporter.info(f"  features: cache hit {cached.folder.name}")
            return cached
        backbone = self.backbone(cfg, preprocess.image_size)
        layout = backbone.layout(blocks_needed)
        if dataset.volume is not None:
            layout = replace(layout, parts=dataset.volume.parts)
        for split in dataset.splits:  # train, val, test (a shifted test set: test alone)
            if self.cache.split_intact(self.cache.folder(key, layout), split, splits[split]):
                self.reporter.info(f"  features: {split} already extracted, kept")
                continue
            every = dataset.splits[split].images
            rows = self.ranks.share(len(every), self.batch_size if dataset.volume is None else 1)
            images = every if len(rows) == len(every) else every.subset(np.arange(rows.start, rows.stop))
            start = time.perf_counter()
            options = dict(device=self.device, precision=self.precision, batch_size=self.batch_size,
                           num_workers=self.num_workers, reporter=self.reporter,
                           description=f"  extract {cfg.display_name} / {dataset.name} / {split}")
            if dataset.volume is not None:
                array = extract_volume_bundle(backbone, layout, images, dataset.volume, preprocess, **options)
            else:
                array = extract_bundle(backbone, layout, images, preprocess, **options)
            array = self.ranks.gather_rows(array)
            seconds = time.perf_counter() - start
            if self.ranks.main:
                self.cache.write_split(key, layout, split, array, self.dtype, seconds, splits[split])
                self.extractions.append(Extraction(cfg.display_name, dataset.name, split, len(every), seconds))
            self.ranks.barrier()
        manifest = {
            "backbone": {"label": cfg.display_name, **description.identity, **backbone.weights_revision},
            "preprocess": preprocess.identity(),
            "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "split_origin": dataset.split_origin},
            "splits": {name: {"n": len(s), "ids_sha": ids_digest(s.sample_ids)} for name, s in dataset.splits.items()},
            "dtype": self.dtype,
            "precision": self.precision,
            "device": str(self.device),
            "backbone_params": sum(p.numel() for p in backbone.model.parameters()),
            "torch": torch.__version__,
        }
        if self.ranks.main:
            finished = self.cache.finish(key, layout, manifest)
        self.ranks.barrier()
        return finished if self.ranks.main else self.cache.find(key, blocks_needed, splits)

    def backbone(self, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
        slot = (cfg.display_name, image_size)
        if slot not in self._built:
            self.release()  # hold one model at a time: ViT-g alone needs several GB
            self.reporter.info(f"  building backbone {cfg.display_name} ({cfg.weights_kind} weights, {image_size} px)")
            self._built[slot] = build_backbone(cfg, image_size)
        return self._built[slot]

    def release(self) -> None:
        self._built.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


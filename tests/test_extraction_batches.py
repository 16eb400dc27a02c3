"""Extraction from the preprocessing cache reads whole quantised batches and normalises them on the device: the
features must equal the per-image path's, bit for bit (so caches and job keys stay valid)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from radbench.backbones import BackboneConfig, build_backbone
from radbench.data.base import FileImages
from radbench.data.precache import PrecachedImages, build_split
from radbench.data.transforms import Preprocess
from radbench.features import extract
from radbench.progress import Reporter


@pytest.mark.parametrize("dtype, mode", [("uint8", "resize"), ("uint16", "pad"), ("uint8", "crop")])
def test_batched_cache_reading_equals_the_per_image_path(tmp_path, shared_data, dtype, mode, monkeypatch):
    paths = tuple(sorted((shared_data / "nih_chestxray14_images").glob("*.png"))[:21])
    preprocess = Preprocess(32, mode, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    build_split(FileImages(paths), preprocess, tmp_path / "c.npy", dtype, 0, Reporter(quiet=True), "c")
    images = PrecachedImages(tmp_path / "c.npy", np.arange(len(paths))[::-1].copy())  # a reordered subset view
    backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    layout = backbone.layout(2)
    cached = replace(preprocess, quantize=dtype)

    def features():
        return extract.extract_bundle(backbone, layout, images, cached, device=torch.device("cpu"), precision="fp32",
                                      batch_size=8, num_workers=0, reporter=Reporter(quiet=True), description="t")

    batched = features()
    calls = []
    monkeypatch.setattr(extract, "to_model_input", lambda *a: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(extract, "PrecachedImages", type("NotCache", (), {}))  # force the per-image path
    per_image = features()
    assert not calls and batched.shape == (21, layout.width)
    assert np.array_equal(batched, per_image)

"""resize: crop is ImageNet's evaluation transform (shorter side to 256 for 224, centre crop), as torchvision does
it; segmentation datasets refuse it (their masks would lose the edges)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radbench.config import parse_study
from radbench.data.transforms import Preprocess
from radbench.errors import ConfigError


def test_crop_equals_torchvision_resize_then_centre_crop():
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    image = rng.random((300, 400)).astype(np.float32)
    ours = Preprocess(224, "crop", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).fit_unit(image)
    reference = v2.CenterCrop(224)(v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)(
        torch.from_numpy(image)[None])).clamp(0, 1)
    assert ours.shape == (1, 224, 224)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_crop_through_the_preprocessing_cache_is_cropped_once(tmp_path, shared_data):
    """The cache stores the cropped image; reading it back must not crop it again (it did: 0.875 of 0.875)."""
    from radbench.data.base import FileImages
    from radbench.data.precache import build_split
    from radbench.progress import Reporter

    paths = tuple(sorted((shared_data / "nih_chestxray14_images").glob("*.png"))[:3])
    preprocess = Preprocess(64, "crop", (0.5,) * 3, (0.25,) * 3)
    target = tmp_path / "train.npy"
    build_split(FileImages(paths), preprocess, target, "uint16", 0, Reporter(quiet=True), "test")
    cached = np.load(target)
    from dataclasses import replace

    read_back = replace(preprocess, quantize="uint16")
    for k, path in enumerate(paths):
        from radbench.data.readers import read_image

        direct = preprocess(read_image(path))
        via_cache = read_back(cached[k].astype(np.float32) / 65535.0)
        torch.testing.assert_close(via_cache, direct, atol=1e-3, rtol=0)


def test_segmentation_refuses_crop(tmp_path, shared_data):
    raw = {"name": "s", "output_dir": str(tmp_path / "out"), "resize": "crop",
           "backbones": [{"name": "timm:test_vit", "weights": "none"}],
           "datasets": [{"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
                         "images": "train_images", "masks": "train_masks"}],
           "protocols": [{"segmentation": {}}]}
    with pytest.raises(ConfigError, match="'lungs' is a segmentation dataset; resize: crop is for classification"):
        parse_study(raw, tmp_path)

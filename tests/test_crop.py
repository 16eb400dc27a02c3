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


def test_segmentation_refuses_crop(tmp_path, shared_data):
    raw = {"name": "s", "output_dir": str(tmp_path / "out"), "resize": "crop",
           "backbones": [{"name": "timm:test_vit", "weights": "none"}],
           "datasets": [{"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
                         "images": "train_images", "masks": "train_masks"}],
           "protocols": [{"segmentation": {}}]}
    with pytest.raises(ConfigError, match="'lungs' is a segmentation dataset; resize: crop is for classification"):
        parse_study(raw, tmp_path)

"""torchxrayvision's CXR models: their one-channel [-1024, 1024] convention is reproduced exactly, the features
equal the library's own, and a state-dict file loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radbench.backbones import BACKBONES, BackboneConfig, build_backbone, describe_backbone

xrv = pytest.importorskip("torchxrayvision")


def test_features_equal_torchxrayvisions_own():
    backbone = build_backbone(BackboneConfig(name="xrv_densenet121_all", weights="none"), 64)
    image = torch.rand(2, 1, 64, 64) * 2048 - 1024
    with torch.no_grad():
        expected = backbone.model.model.features2(image)
    torch.testing.assert_close(backbone.forward_bundle(image.repeat(1, 3, 1, 1), backbone.layout(1)), expected)
    assert BACKBONES.get("xrv_densenet121_all").params_m == pytest.approx(
        sum(p.numel() for p in backbone.model.parameters()) / 1e6, abs=0.05)


def test_input_convention_is_torchxrayvisions(shared_data):
    """[0, 1] -> [-1024, 1024] exactly as xrv.datasets.normalize on the 8-bit image; resizing differs only by the
    kernel (skimage's vs torch's), on a real radiograph."""
    from PIL import Image

    from radbench.data.transforms import Preprocess

    norm = describe_backbone(BackboneConfig(name="xrv_densenet121_all", weights="none")).normalisation
    image = np.asarray(Image.open(shared_data / "nih_chestxray14_images" / "00000001_000.png").convert("L"))
    theirs_full = xrv.datasets.normalize(image.astype(np.float32), 255)
    preprocess = Preprocess(image.shape[0], "resize", norm.mean, norm.std, norm.interpolation)
    ours_full = preprocess(image)[0].numpy()  # same size: no resize, only the intensity mapping
    np.testing.assert_allclose(ours_full, theirs_full, atol=1e-3)
    size = 224
    theirs = xrv.datasets.XRayResizer(size, engine="skimage")(theirs_full[None])[0]
    ours = Preprocess(size, "resize", norm.mean, norm.std, norm.interpolation)(image)
    assert torch.equal(ours[0], ours[1]) and torch.equal(ours[0], ours[2])  # the model reads one channel
    difference = np.abs(ours[0].numpy() - theirs)
    assert difference.mean() < 0.01 * 2048 and difference.max() < 0.1 * 2048, (difference.mean(), difference.max())


def test_state_dict_file_loads(tmp_path):
    source = build_backbone(BackboneConfig(name="xrv_resnet50_all", weights="none"), 64)
    state = {k: v + 0.01 for k, v in source.model.model.state_dict().items()}
    torch.save(state, tmp_path / "resnet.pt")
    loaded = build_backbone(BackboneConfig(name="xrv_resnet50_all", weights=str(tmp_path / "resnet.pt")), 64)
    torch.testing.assert_close(loaded.model.model.conv1.weight, state["conv1.weight"])
    assert describe_backbone(BackboneConfig(name="xrv_resnet50_all", weights=str(tmp_path / "resnet.pt"))
                             ).identity["checkpoint_sha256"]


def test_an_xrv_model_gives_its_four_stages_to_segmentation_decoders():
    """DenseNet's four dense blocks (the last normed, as the pooled vector sees it): what a decoder taps."""
    from radbench.segmentation.decoders import dense_taps, tap_indices

    backbone = build_backbone(BackboneConfig(name="xrv_densenet121_all", weights="none"), 64)
    images = torch.rand(2, 3, 64, 64)
    assert tap_indices(backbone.model, 4) == [0, 1, 2, 3]
    maps = dense_taps(backbone.model.eval(), images, [0, 1, 2, 3])
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (1024, 2, 2)]
    with torch.no_grad():
        torch.testing.assert_close(maps[-1], backbone.model.forward_features(images))
        features = backbone.model.model.features  # the first block straight from torchxrayvision's own modules
        x = images[:, :1]
        for name, module in features.named_children():
            x = module(x)
            if name == "denseblock1":
                break
        torch.testing.assert_close(maps[0], x)

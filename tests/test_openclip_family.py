"""open_clip image towers, offline: a tiny model config and a checkpoint the test writes load through `weights:`
and give the in-memory tower's features; preprocessing is open_clip's own; a study runs on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radbench.backbones import BackboneConfig, build_backbone, describe_backbone

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openclip")
    (folder / "radbench-tiny-vit.json").write_text(json.dumps({
        "embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(folder / "radbench-tiny-vit.json")
    torch.manual_seed(1)
    model = open_clip.create_model("radbench-tiny-vit").eval()
    torch.save(model.state_dict(), folder / "tiny.pt")
    return folder / "tiny.pt", model


def test_checkpoint_gives_the_in_memory_towers_features(tiny_checkpoint):
    path, model = tiny_checkpoint
    backbone = build_backbone(BackboneConfig(name="open_clip:radbench-tiny-vit", weights=str(path)), 32)
    layout = backbone.layout(2)
    assert layout.kind == "tokens" and layout.depth == 3
    images = torch.rand(2, 3, 32, 32)
    bundle = backbone.forward_bundle(images, layout)
    with torch.no_grad():
        out = model.visual.forward_intermediates(images, indices=2, normalize_intermediates=True,
                                                 intermediates_only=True, output_fmt="NLC", output_extra_tokens=True)
    torch.testing.assert_close(bundle[:, :32], out["image_intermediates_prefix"][0][:, 0])
    torch.testing.assert_close(bundle[:, 32:64], out["image_intermediates_prefix"][1][:, 0])
    torch.testing.assert_close(bundle[:, 64:96], out["image_intermediates"][1].mean(1))
    # the CLS token of the last block, normed, is what CLIP projects: `embed` is CLIP's image embedding
    with torch.no_grad():
        embedding = model.encode_image(images)
    torch.testing.assert_close(bundle[:, 32:64] @ model.visual.proj, embedding)
    assert layout.embed == 16
    torch.testing.assert_close(bundle[:, layout.columns("embed")], embedding)


def test_other_input_sizes_resize_the_position_embedding(tiny_checkpoint):
    path, _ = tiny_checkpoint
    backbone = build_backbone(BackboneConfig(name="open_clip:radbench-tiny-vit", weights=str(path)), 48)
    assert backbone.forward_bundle(torch.rand(1, 3, 48, 48), backbone.layout(1)).shape == (1, 64 + 16)


def test_input_tensor_equals_open_clips_own_transform(tiny_checkpoint, shared_data):
    from PIL import Image

    from radbench.data.transforms import Preprocess

    path, _ = tiny_checkpoint
    norm = describe_backbone(BackboneConfig(name="open_clip:radbench-tiny-vit", weights=str(path))).normalisation
    size = 224
    model = open_clip.create_model("radbench-tiny-vit", force_image_size=size)
    theirs_transform = open_clip.image_transform(size, is_train=False, mean=norm.mean, std=norm.std,
                                                 interpolation=norm.interpolation)
    config = open_clip.get_model_preprocess_cfg(model)
    assert tuple(config["mean"]) == norm.mean and tuple(config["std"]) == norm.std
    assert config["interpolation"] == norm.interpolation
    image = np.asarray(Image.open(shared_data / "nih_chestxray14_images" / "00000001_000.png").convert("L"))
    theirs = theirs_transform(Image.fromarray(image).convert("RGB"))
    ours = Preprocess(size, "resize", norm.mean, norm.std, norm.interpolation)(image)
    difference = (ours - theirs).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_study_runs_on_an_open_clip_tower(tiny_checkpoint, tmp_path, pneumonia_npz, shared_data):
    from radbench.config import parse_study
    from radbench.progress import Reporter
    from radbench.runner import run_study
    from tests.conftest import tiny_study

    path, _ = tiny_checkpoint
    lungs = {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
             "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127}
    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}, lungs],
                     [{"knn": {"k": [3]}}, {"linear": {"epochs": 2, "lr": [0.1], "normalize": "standard"}},
                      {"segmentation": {"epochs": 1, "lr": [0.1], "batch_size": 4}},
                      {"lora": {"epochs": 1, "lr": [1e-3], "batch_size": 16, "augment": None}}])
    raw["backbones"] = [{"name": "open_clip:radbench-tiny-vit", "weights": str(path)}]
    assert run_study(parse_study(raw, tmp_path), Reporter(quiet=True)).jobs_run == 4
    from radbench.results import ResultsStore

    jobs = ResultsStore(tmp_path / "out" / "results.sqlite").jobs()
    assert '"trainable_fraction"' in jobs[jobs.protocol == "lora"].details.item()

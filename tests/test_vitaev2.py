"""ViTAEv2, DINO-CXR's backbone, built natively: the same state-dict layout and the same features as the official
code (recorded from it by tests/reference/vitaev2.py, or compared live when VITAEV2_OFFICIAL points at its
Image-Classification folder), its published checkpoint layouts load, and it pretrains with DINO."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from radbench.backbones import BACKBONES, BackboneConfig, build_backbone, describe_backbone
from radbench.backbones.vitaev2_model import vitaev2
from radbench.errors import BackboneError
from tests.reference.vitaev2 import (
    CASES,
    REFERENCE,
    layout_sha256,
    official_model,
    seeded_images,
    seeded_state,
)

RECORDED = json.loads(REFERENCE.read_text())
NAMES = {"ViTAEv2_S": "vitaev2_s", "ViTAEv2_48M": "vitaev2_48m", "ViTAEv2_B": "vitaev2_b"}


def pooled(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_head(model.forward_features(images), pre_logits=True)


@pytest.mark.parametrize("variant", sorted(RECORDED["variants"]))
def test_layout_and_size_are_the_official_codes(variant):
    with torch.device("meta"):
        model = vitaev2(variant, num_classes=1000)  # the official models carry an ImageNet head
    recorded = RECORDED["variants"][variant]
    assert layout_sha256(model.state_dict()) == recorded["layout_sha256"]
    params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("head."))
    assert params == recorded["params_without_head"]
    assert BACKBONES.get(NAMES[variant]).params_m == pytest.approx(params / 1e6, abs=0.05)


@pytest.mark.parametrize("case", RECORDED["features"], ids=lambda c: f"{c['variant']}-{c['size']}px")
def test_features_equal_the_official_codes(case):
    """Seeded weights (BatchNorm statistics included) and images; 64 and 96 px pad the window grids, 224 does not."""
    assert (case["variant"], case["size"], case["count"]) in CASES
    model = vitaev2(case["variant"]).eval()
    model.load_state_dict(seeded_state(model.state_dict()), strict=True)
    features = pooled(model, seeded_images(case["count"], case["size"]))
    expected = torch.tensor(case["values"])
    assert features.shape == expected.shape
    # float32 through ~20 cells, recorded to 7 digits: agreement to 1e-5 of the features' scale
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.skipif(not os.environ.get("VITAEV2_OFFICIAL"), reason="VITAEV2_OFFICIAL (the official code) not set")
@pytest.mark.parametrize("size", [64, 160])
def test_features_equal_the_official_code_itself(size):
    official = official_model(Path(os.environ["VITAEV2_OFFICIAL"]), "ViTAEv2_S", size)
    state = seeded_state(official.state_dict(), seed=size)
    official.load_state_dict(state, strict=True)
    model = vitaev2("ViTAEv2_S", num_classes=1000).eval()
    model.load_state_dict({k: v for k, v in state.items() if "relative_position_index" not in k}, strict=True)
    images = seeded_images(2, size, seed=size)
    with torch.no_grad():
        expected = official(images)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def official_layout_state(variant: str = "ViTAEv2_S") -> dict:
    """A state dict named and shaped as the official code saves it: ImageNet head and the constant
    relative_position_index buffers of every window attention included."""
    model = vitaev2(variant, num_classes=1000)
    state = seeded_state(model.state_dict(), seed=3)
    for i in (0, 1):
        state[f"layers.{i}.RC.attn.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
        for k in range(len(model.layers[i].NC)):
            state[f"layers.{i}.NC.{k}.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    return state


def test_published_checkpoint_layouts_load(tmp_path):
    """The official training checkpoint (timm's saver: `state_dict` beside an argparse Namespace) and a DINO-CXR
    teacher (`teacher`, `module.backbone.` prefixes, a DINO head) give the same features as the weights themselves."""
    state = official_layout_state()
    reference = vitaev2("ViTAEv2_S").eval()
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")
                               and not k.endswith("relative_position_index")})
    images = seeded_images(2, 64)
    expected = pooled(reference, images)
    args = argparse.Namespace(model="ViTAEv2_S", lr=5e-4)
    official = tmp_path / "ViTAEv2-S.pth.tar"
    torch.save({"epoch": 299, "arch": "ViTAEv2_S", "state_dict": state, "args": args}, official)
    teacher = {f"module.backbone.{k}": v for k, v in state.items() if not k.startswith("head.")}
    teacher["module.head.last_layer.weight_g"] = torch.ones(8, 1)
    dino = tmp_path / "dino_cxr_checkpoint.pth"
    torch.save({"student": {}, "teacher": teacher, "epoch": 10, "args": args}, dino)
    for path in (official, dino):
        backbone = build_backbone(BackboneConfig(name="vitaev2_s", weights=str(path)), 64)
        torch.testing.assert_close(backbone.forward_bundle(images, backbone.layout(1)), expected, rtol=0, atol=0)
    random = build_backbone(BackboneConfig(name="vitaev2_s", weights="none"), 64)
    assert not torch.allclose(pooled(random.model, images), expected, atol=1e-3)
    assert describe_backbone(BackboneConfig(name="vitaev2_s", weights=str(dino))).identity["checkpoint_sha256"]


def test_wrong_checkpoints_sizes_and_hub_weights_are_one_line(tmp_path):
    other = tmp_path / "b.pth"
    torch.save({"state_dict": vitaev2("ViTAEv2_48M").state_dict()}, other)
    with pytest.raises(BackboneError, match=r"b\.pth: checkpoint does not fit the model: .*size mismatch"):
        build_backbone(BackboneConfig(name="vitaev2_s", weights=str(other)), 64)
    with pytest.raises(BackboneError, match="not a multiple of 32"):
        build_backbone(BackboneConfig(name="vitaev2_s", weights="none"), 48)
    with pytest.raises(BackboneError, match="not on a model hub; download the checkpoint from github.com/ViTAE"):
        describe_backbone(BackboneConfig(name="vitaev2_s"))


def test_dino_pretrains_vitaev2_and_its_teacher_loads_back(tmp_path, shared_data):
    """DINO-CXR's recipe on its own backbone: two DINO steps on shared chest X-rays, then the saved teacher is
    `weights:` of vitaev2_s, with the teacher's features."""
    from radbench.pretrain.config import parse_pretrain
    from radbench.pretrain.loop import run_pretraining
    from radbench.pretrain.model import build_networks
    from radbench.pretrain.state import saved_checkpoints
    from radbench.progress import Reporter
    from tests.conftest import ROOT

    raw = {"name": "cxr-vitae", "output_dir": str(tmp_path / "out"), "backbone": {"name": "vitaev2_s", "weights": "none"},
           "data": [{"adapter": "folder", "path": str(shared_data / "cxr_lung_seg_shenzhen" / "train_images")}],
           "image_size": 32, "epochs": 1, "batch_size": 4, "checkpoint_every": 2, "num_workers": 0,
           "head": {"output_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}}
    config = parse_pretrain(raw, ROOT)
    run_pretraining(config, Reporter(quiet=True), max_steps=2)
    cfg = config.config
    weights = dict(saved_checkpoints(cfg.output_dir))[2]
    state = torch.load(cfg.output_dir / "state.pt", weights_only=True)
    _, teacher = build_networks(cfg)
    teacher.load_state_dict(state["teacher"])
    images = torch.from_numpy(np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32))
    loaded = build_backbone(BackboneConfig(name="vitaev2_s", weights=str(weights)), 32).model
    start = build_backbone(BackboneConfig(name="vitaev2_s", weights="none"), 32).model
    expected = pooled(teacher.trunk.eval(), images)
    assert torch.equal(pooled(loaded, images), expected)
    assert not torch.equal(pooled(start, images), expected)

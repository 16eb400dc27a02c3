"""Backbones: the registry, DINOv2 torch.hub checkpoint conversion, feature bundles and types."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from radbench.backbones import BACKBONES, BackboneConfig, build_backbone, describe_backbone
from radbench.backbones.layout import BundleLayout
from radbench.errors import BackboneError

SMALL = {"depth": 2, "embed_dim": 48, "num_heads": 2}  # a 2-block ViT with DINOv2's layout, for speed


def test_registry_names_map_to_timm_dinov2():
    for size, word in {"s": "small", "b": "base", "l": "large", "g": "giant"}.items():
        assert BACKBONES.get(f"dinov2_vit{size}14").model_id == f"vit_{word}_patch14_dinov2.lvd142m"
        assert BACKBONES.get(f"dinov2_vit{size}14_reg").model_id == f"vit_{word}_patch14_reg4_dinov2.lvd142m"
    for name in ("vit_large_in21k", "deit_base", "resnet152", "densenet201", "vgg19"):
        assert timm.is_model(BACKBONES.get(name).model_id.split(".")[0])


def test_each_model_gets_its_own_normalisation():
    dinov2 = describe_backbone(BackboneConfig(name="dinov2_vits14")).normalisation
    clip = describe_backbone(BackboneConfig(name="timm:vit_base_patch16_clip_224.openai")).normalisation
    assert dinov2.mean == pytest.approx((0.485, 0.456, 0.406))
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def to_torch_hub_layout(model: torch.nn.Module, registers: bool) -> dict:
    """Write a timm DINOv2 model's weights the way facebookresearch/dinov2's torch.hub checkpoints store them."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["mask_token"] = torch.zeros(1, model.embed_dim)
    if registers:  # dinov2 keeps CLS inside pos_embed and adds registers without position embedding
        state["register_tokens"] = state.pop("reg_token")
        cls_pos = torch.randn(1, 1, model.embed_dim) * 0.02
        state["pos_embed"] = torch.cat([cls_pos, state["pos_embed"]], dim=1)
        state["cls_token"] = state["cls_token"] - cls_pos
    return state


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2_torch_hub_checkpoint_loads_exactly(tmp_path, registers):
    arch = "vit_small_patch14_reg4_dinov2" if registers else "vit_small_patch14_dinov2"
    torch.manual_seed(1)
    original = timm.create_model(arch, pretrained=False, num_classes=0, img_size=518, **SMALL).eval()
    with torch.no_grad():  # non-trivial weights everywhere (timm inits some to zero/one)
        for parameter in original.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    checkpoint = tmp_path / "dinov2_pretrain.pth"
    torch.save(to_torch_hub_layout(original, registers), checkpoint)

    name = "dinov2_vits14_reg" if registers else "dinov2_vits14"
    loaded = build_backbone(BackboneConfig(name=name, weights=str(checkpoint), model_kwargs=SMALL), 518)
    images = torch.randn(2, 3, 518, 518)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.forward_features(images), original.forward_features(images))
    assert loaded.description.identity["checkpoint_sha256"]

    # at 224 px the 37x37 position grid is resampled (bicubic) to 16x16 and the model still runs
    small = build_backbone(BackboneConfig(name=name, weights=str(checkpoint), model_kwargs=SMALL), 224)
    assert small.model.pos_embed.shape[1] == 16 * 16 + (0 if registers else 1)
    bundle = small.forward_bundle(torch.randn(2, 3, 224, 224), small.layout(2))
    assert bundle.shape == (2, 3 * 48)


def test_dino_training_checkpoint_with_teacher_wrapper(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32).eval()
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    state["head.mlp.0.weight"] = torch.zeros(4, 64)  # DINO projection head: not part of the backbone
    torch.save({"teacher": state, "epoch": 3}, tmp_path / "checkpoint.pth")
    loaded = build_backbone(BackboneConfig(name="timm:test_vit", weights=str(tmp_path / "checkpoint.pth")), 32)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_token_bundle_matches_the_model_and_feature_types_slice_it():
    backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    layout = backbone.layout(4)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        bundle = backbone.forward_bundle(images, layout).numpy()
        tokens = backbone.model.forward_features(images).numpy()  # final-normed tokens
    dim = 64
    np.testing.assert_allclose(bundle[:, layout.columns("cls")], tokens[:, 0], atol=1e-5)
    np.testing.assert_allclose(bundle[:, layout.columns("mean")], tokens[:, 1:].mean(1), atol=1e-5)
    assert len(layout.columns("cls+mean")) == 2 * dim
    assert len(layout.columns("last4")) == 4 * dim and len(layout.columns("last4+mean")) == 5 * dim
    np.testing.assert_array_equal(layout.columns("last4")[-dim:], layout.columns("cls"))
    with pytest.raises(BackboneError):
        BundleLayout("tokens", dim, 2).columns("last4")


def test_random_init_is_reproducible():
    first = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    second = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    for (key, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), key


def test_cnn_gives_pooled_features_for_every_type():
    backbone = build_backbone(BackboneConfig(name="timm:test_resnet", weights="none"), 32)
    layout = backbone.layout(4)
    assert layout.kind == "pooled" and layout.resolve("cls+mean") == "pool"
    out = backbone.forward_bundle(torch.randn(2, 3, 32, 32), layout)
    assert out.shape == (2, backbone.dim)


"""ViTAEv2 (DINO-CXR's backbone): `vitaev2_s`, `vitaev2_48m`, `vitaev2_b`, built natively (vitaev2_model.py).

Weights: a local checkpoint (the official ImageNet files, published on OneDrive by the authors, or a DINO-CXR
teacher: `teacher` / `module.` / `backbone.` wrappers are unwrapped) or `none` (seeded random). There is no hub
radbench could fetch them from, so `weights: hub` is one line saying so, at plan. The image vector is the mean of
the last stage's tokens, as the official `forward_features`; ImageNet normalisation and bicubic resizing, as its
default config."""

from __future__ import annotations

from radbench.backbones.base import (
    BACKBONES,
    FAMILIES,
    BackboneConfig,
    BackboneDescription,
    BackboneEntry,
    Family,
    FeatureBackbone,
    Normalisation,
    checkpoint_path,
)
from radbench.backbones.checkpoint import checkpoint_sha256
from radbench.errors import BackboneError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_IDS = ("ViTAEv2_S", "ViTAEv2_48M", "ViTAEv2_B")
SOURCE = "github.com/ViTAE-Transformer/ViTAE-Transformer (Image-Classification, ViTAEv2 table)"


def vitaev2_exists(model_id: str) -> bool:
    return model_id in MODEL_IDS


def describe_vitaev2(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    if cfg.weights_kind == "hub":
        raise BackboneError(f"backbone {cfg.name!r}: ViTAEv2 weights are not on a model hub; download the "
                            f"checkpoint from {SOURCE} and give its path as `weights:` (or `weights: none`)")
    identity: dict = {"family": "vitaev2", "model_id": entry.model_id, "weights": cfg.weights_kind}
    path = checkpoint_path(cfg)
    if path is not None:
        identity["checkpoint_sha256"] = checkpoint_sha256(path)
    return BackboneDescription(identity, Normalisation(tuple(cfg.mean or IMAGENET_MEAN),
                                                       tuple(cfg.std or IMAGENET_STD), "bicubic"))


def build_vitaev2(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch

    from radbench.backbones.checkpoint import load_checkpoint
    from radbench.backbones.vitaev2_model import vitaev2

    description = describe_vitaev2(entry, cfg)
    if image_size % 32:  # four stages halve the grid; window attention needs the exact side of each
        raise BackboneError(f"backbone {cfg.name!r}: image_size {image_size} is not a multiple of 32 "
                            "(ViTAEv2 reduces the image 32-fold in four stages)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = vitaev2(entry.model_id, **cfg.model_kwargs)
        except TypeError as error:
            raise BackboneError(f"backbone {cfg.name!r}: model_kwargs do not fit ViTAEv2 ({error})") from None
    path = checkpoint_path(cfg)
    if path is not None:
        load_checkpoint(model, path, head_prefixes=("head.",))
    model.eval().requires_grad_(False)
    return FeatureBackbone(cfg.display_name, model, "pooled", model.num_features, description,
                           lambda x, layout: model.forward_head(model.forward_features(x), pre_logits=True))


FAMILIES.add("vitaev2", Family("vitaev2", build_vitaev2, vitaev2_exists, describe_vitaev2))
for _name, _model_id, _description, _params in [
    ("vitaev2_s", "ViTAEv2_S", "ViTAEv2-S (DINO-CXR's backbone), ImageNet-1k supervised", 18.8),
    ("vitaev2_48m", "ViTAEv2_48M", "ViTAEv2-48M, ImageNet-1k supervised", 47.9),
    ("vitaev2_b", "ViTAEv2_B", "ViTAEv2-B, ImageNet-1k supervised", 88.7),
]:
    BACKBONES.add(_name, BackboneEntry(_name, "vitaev2", _model_id, _description, _params, 224, None, "imagenet",
                                       "none stated"))

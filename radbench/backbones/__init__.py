"""Backbones: a registry of named models, families that build them, feature bundles for extraction."""

from radbench.backbones import (  # noqa: F401  (register the families and the named models)
    custom_family,
    hf_family,
    openclip_family,
    timm_family,
    vitaev2_family,
    xrv_family,
    zoo,
)
from radbench.backbones.base import (
    BACKBONES,
    FAMILIES,
    BackboneConfig,
    BackboneDescription,
    FeatureBackbone,
    checkpoint_path,
    resolve_entry,
)
from radbench.backbones.checkpoint import checkpoint_preprocessing
from radbench.backbones.layout import BundleLayout


def build_backbone(cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    entry = resolve_entry(cfg.name)
    return FAMILIES.get(entry.family).build(entry, _recorded_normalisation(cfg), image_size)


def describe_backbone(cfg: BackboneConfig) -> BackboneDescription:
    entry = resolve_entry(cfg.name)
    return FAMILIES.get(entry.family).describe(entry, _recorded_normalisation(cfg))


def _recorded_normalisation(cfg: BackboneConfig) -> BackboneConfig:
    """Weights trained by `radbench pretrain` record the normalisation they were trained with: it travels with
    them (as timm's pretrained_cfg does), unless the study sets mean / std itself."""
    path = checkpoint_path(cfg)
    recorded = checkpoint_preprocessing(path) if path is not None else None
    if not recorded or (cfg.mean is not None and cfg.std is not None):
        return cfg
    return cfg.model_copy(update={"mean": cfg.mean or tuple(recorded["mean"]), "std": cfg.std or tuple(recorded["std"])})


__all__ = [
    "BACKBONES", "BackboneConfig", "BackboneDescription", "BundleLayout", "FeatureBackbone", "build_backbone",
    "describe_backbone", "resolve_entry",
]

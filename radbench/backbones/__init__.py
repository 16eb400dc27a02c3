"""Backbones: a registry of named models, families that build them, feature bundles for extraction."""

from radbench.backbones import (  # noqa: F401  (register the families and the named models)
    hf_family,
    openclip_family,
    timm_family,
    xrv_family,
    zoo,
)
from radbench.backbones.base import (
    BACKBONES,
    FAMILIES,
    BackboneConfig,
    BackboneDescription,
    FeatureBackbone,
    resolve_entry,
)
from radbench.backbones.layout import BundleLayout


def build_backbone(cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    entry = resolve_entry(cfg.name)
    return FAMILIES.get(entry.family).build(entry, cfg, image_size)


def describe_backbone(cfg: BackboneConfig) -> BackboneDescription:
    entry = resolve_entry(cfg.name)
    return FAMILIES.get(entry.family).describe(entry, cfg)


__all__ = [
    "BACKBONES", "BackboneConfig", "BackboneDescription", "BundleLayout", "FeatureBackbone", "build_backbone",
    "describe_backbone", "resolve_entry",
]

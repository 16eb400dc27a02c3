"""In-house models as backbones, timm-style: a builder function registered under a name.

    import radbench

    @radbench.register_backbone("inhouse_cxr", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), version="v3")
    def build(image_size: int, weights: str | None) -> torch.nn.Module:
        model = MyNet()
        if weights:                          # the study's `weights:` path (None for `weights: none`)
            model.load_state_dict(torch.load(weights, weights_only=True))
        return model                         # forward: (B, 3, H, W) -> (B, D) features

    radbench.run("study.yaml")               # backbones: [{name: inhouse_cxr, weights: /models/v3.pt}]

A module that is a timm-style ViT (`forward_intermediates` and a CLS token) gets the cls / mean / lastN grid; any
other module's forward output is the one pooled feature vector. The cache key holds the name, `version`, the
builder's source code (a changed builder is new features) and the checkpoint's sha256. The registration lives in
the Python process: use it with `radbench.run` (or an executor whose workers import the registering module)."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class CustomBuilder:
    build: Callable
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    version: str
    code_sha256: str


BUILDERS: dict[str, CustomBuilder] = {}


def register_backbone(name: str, *, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                      interpolation: str = "bicubic", version: str = "1", description: str = "",
                      native: int | None = None, licence: str = "in-house"):
    """Decorator: `build(image_size, weights) -> nn.Module` becomes the backbone `name` of any study."""
    def decorator(build: Callable) -> Callable:
        try:
            source = inspect.getsource(build)
        except (OSError, TypeError):  # defined interactively: its qualified name stands in
            source = build.__qualname__
        BUILDERS[name] = CustomBuilder(build, tuple(mean), tuple(std), interpolation, str(version),
                                       hashlib.sha256(source.encode()).hexdigest())
        if name in BACKBONES and BACKBONES.get(name).family != "custom":
            raise BackboneError(f"register_backbone: {name!r} already names a {BACKBONES.get(name).family} backbone")
        BACKBONES.replace(name, BackboneEntry(name, "custom", name, description or f"in-house model {name}", None,
                                          native, None, "custom", licence, False))
        return build

    return decorator


def describe_custom(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    builder = _builder(entry.model_id)
    identity: dict = {"family": "custom", "model_id": entry.model_id, "version": builder.version,
                      "code_sha256": builder.code_sha256, "weights": cfg.weights_kind,
                      "model_kwargs": cfg.model_kwargs}
    path = checkpoint_path(cfg)
    if path is not None:
        identity["checkpoint_sha256"] = checkpoint_sha256(path)
    return BackboneDescription(identity, Normalisation(tuple(cfg.mean or builder.mean), tuple(cfg.std or builder.std),
                                                       builder.interpolation))


def build_custom(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch

    builder = _builder(entry.model_id)
    path = checkpoint_path(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random-init weights are the same on every run, so caches stay valid
        model = builder.build(image_size=image_size, weights=str(path) if path else None, **cfg.model_kwargs)
    if not isinstance(model, torch.nn.Module):
        raise BackboneError(f"backbone {cfg.name!r}: its builder returned {type(model).__name__}, not a torch module")
    model = model.eval().requires_grad_(False)
    description = describe_custom(entry, cfg)
    if hasattr(model, "forward_intermediates") and getattr(model, "cls_token", None) is not None:
        from radbench.backbones.timm_family import timm_feature_backbone

        return timm_feature_backbone(model, cfg, description, entry, image_size)
    with torch.no_grad():
        probe = model(torch.zeros(1, 3, image_size, image_size))
    if probe.ndim != 2:
        raise BackboneError(f"backbone {cfg.name!r}: its forward gives shape {tuple(probe.shape)}; a pooled backbone "
                            "returns (batch, features)")
    return FeatureBackbone(cfg.display_name, model, "pooled", int(probe.shape[1]), description,
                           lambda x, layout: model(x))


def _builder(name: str) -> CustomBuilder:
    if name not in BUILDERS:
        raise BackboneError(f"backbone {name!r} is not registered in this process: import the module that calls "
                            "radbench.register_backbone before running")
    return BUILDERS[name]


FAMILIES.add("custom", Family("custom", build_custom, lambda model_id: model_id in BUILDERS, describe_custom))

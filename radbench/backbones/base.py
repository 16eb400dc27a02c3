"""Backbone config, the registry of named backbones, and the interface extraction uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import ValidationInfo, field_validator

from radbench.backbones.layout import BundleLayout
from radbench.errors import BackboneError
from radbench.registry import Registry
from radbench.schema import StrictModel, resolve_path

if TYPE_CHECKING:
    import torch


class BackboneConfig(StrictModel):
    name: str  # registry name (dinov2_vits14, ...) or timm:<model name>
    weights: str = "hub"  # hub | none (random init) | path to a checkpoint file
    label: str | None = None  # name shown in results; defaults to `name`
    image_size: int | None = None  # overrides the study's image_size for this backbone
    mean: tuple[float, float, float] | None = None  # override the weights' normalisation
    std: tuple[float, float, float] | None = None
    model_kwargs: dict[str, Any] = {}  # passed to the model constructor (e.g. drop_path_rate)

    @field_validator("weights", mode="after")
    @classmethod
    def _weights(cls, value: str, info: ValidationInfo) -> str:
        if value in ("hub", "none"):
            return value
        return str(resolve_path(value, info))

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def weights_kind(self) -> Literal["hub", "none", "path"]:
        return self.weights if self.weights in ("hub", "none") else "path"  # type: ignore[return-value]


@dataclass(frozen=True)
class BackboneEntry:
    """A named backbone: which family builds it and from which model id, and what `radbench list backbones` shows
    without building it (kept true by a test against the architecture and its pretrained config)."""

    name: str
    family: str
    model_id: str
    description: str
    params_m: float | None = None  # parameters (millions) of the feature extractor, head removed
    native: int | None = None  # input size the weights were trained at
    patch: int | None = None
    normalisation: str = ""  # imagenet | clip | 0.5 | ... (the values themselves come from the weights' config)
    licence: str = ""  # of the weights
    tokens: bool = False  # a CLS token and blocks: the cls / mean / lastN grid; else one pooled vector
    pool: str = "default"  # pooled models: the family's own pooling, or `last_block` (mean of its tokens)
    embed: bool = False  # a CLIP-style tower: its projection is kept and `embed` offered

    @property
    def feature_types(self) -> str:
        if self.tokens:
            return "cls, mean, lastN, lastN+mean" + (", embed" if self.embed else "")
        return "pool (mean of the last block's tokens)" if self.pool == "last_block" else "pool"


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


class FeatureBackbone:
    """A built model plus what extraction needs: its layout, normalisation and identity."""

    def __init__(self, label: str, model: torch.nn.Module, layout_kind: str, dim: int,
                 description: BackboneDescription, forward_bundle: Callable, embed: int = 0):
        self.label = label
        self.embed = embed  # width of the projected embedding a CLIP-style tower appends (0: none)
        self.weights_revision: dict = {}  # e.g. {"hub_revision": commit}: which hub snapshot the weights came from
        self.model = model
        self.layout_kind = layout_kind
        self.dim = dim
        self.description = description
        self._forward_bundle = forward_bundle

    @property
    def depth(self) -> int | None:
        blocks = getattr(self.model, "blocks", None)
        return len(blocks) if blocks is not None else None

    def layout(self, n_last: int) -> BundleLayout:
        if self.layout_kind == "pooled":
            return BundleLayout("pooled", self.dim)
        return BundleLayout("tokens", self.dim, max(1, min(n_last, self.depth)), depth=self.depth, embed=self.embed)

    def forward_bundle(self, images: torch.Tensor, layout: BundleLayout) -> torch.Tensor:
        return self._forward_bundle(images, layout)


@dataclass(frozen=True)
class BackboneDescription:
    """What a backbone is, known without building it: enough for cache and job keys."""

    identity: dict
    normalisation: Normalisation


@dataclass(frozen=True)
class Family:
    """Builds backbones of one library (timm, ...); `exists` checks a model id and `describe` gives identity
    and normalisation without building the model (so a fully cached study never loads weights)."""

    name: str
    build: Callable[[BackboneEntry, BackboneConfig, int], FeatureBackbone]
    exists: Callable[[str], bool]
    describe: Callable[[BackboneEntry, BackboneConfig], BackboneDescription]
    text: Callable | None = None  # (entry, cfg, image_size) -> TextTower (backbones/text.py), vision-language models
    has_text: Callable[[BackboneEntry, BackboneConfig], bool] | None = None
    listed_text: Callable[[BackboneEntry], bool] | None = None  # known to have a text tower, nothing loaded
    logit_bias: Callable[[BackboneEntry, BackboneConfig], bool | None] | None = None  # a sigmoid model's bias


BACKBONES: Registry[BackboneEntry] = Registry("backbone")
FAMILIES: Registry[Family] = Registry("backbone family")


# models the seed papers use that radbench does not offer, and why: named in `list backbones` and in the error
NOT_OFFERED = {
    "seem": "SEEM's Focal-T image encoder (Huix et al.): its published checkpoint does not load onto timm's "
            "FocalNet / DaViT, and SEEM's own code needs detectron2",
}


def resolve_entry(name: str) -> BackboneEntry:
    """Registry names, or `<family>:<model id>` for any model a family can build (e.g. timm:resnet50)."""
    if name in BACKBONES:
        return BACKBONES.get(name)
    absent = next((why for key, why in NOT_OFFERED.items() if name.lower().replace("_", "").startswith(key)), None)
    if absent is not None:
        raise BackboneError(f"backbone {name!r} is not offered: {absent}")
    if ":" in name:
        family_name, model_id = name.split(":", 1)
        family = FAMILIES.get(family_name)
        if not family.exists(model_id):
            raise BackboneError(f"unknown {family_name} model {model_id!r} (backbone {name!r})")
        return BackboneEntry(name, family_name, model_id, f"{family_name} model {model_id}")
    return BACKBONES.get(name)  # raises, listing the known names


def hub_revision(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """The commit of the cached hub snapshot holding the weights (None when they are not in the cache)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str) and Path(path).parent.parent.name == "snapshots":
            return Path(path).parent.name
    return None


def checkpoint_path(cfg: BackboneConfig) -> Path | None:
    return Path(cfg.weights) if cfg.weights_kind == "path" else None

"""Text towers of vision-language backbones (CLIP, OpenCLIP, BiomedCLIP): prompts -> embeddings in the image
embedding's space (the `embed` feature type), with the model's own logit scale (and bias, for sigmoid models).
A family offers one through `Family.text`; `has_text_tower` answers without building anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from radbench.errors import BackboneError


@dataclass
class TextTower:
    encode: Callable[[list[str]], np.ndarray]  # prompts -> (N, D) float32 text embeddings (not normalised)
    logit_scale: float  # exp of the model's learned temperature parameter
    logit_bias: float | None = None  # sigmoid-loss models (SigLIP): the learned bias


def entry_has_text(entry) -> bool:
    """Whether a named entry has a text tower, known without loading anything (open_clip models, the named
    vision-language transformers models)."""
    from radbench.backbones.base import FAMILIES

    family = FAMILIES.get(entry.family)
    return family.listed_text is not None and family.listed_text(entry)


def has_text_tower(cfg) -> bool:
    from radbench.backbones.base import FAMILIES, resolve_entry

    entry = resolve_entry(cfg.name)
    family = FAMILIES.get(entry.family)
    return family.has_text is not None and family.has_text(entry, cfg)


def has_logit_bias(cfg) -> bool | None:
    """Whether the backbone's text tower has a learned logit bias (sigmoid-loss models: SigLIP), known from its
    configuration without building it; None where that cannot be told without the hub."""
    from radbench.backbones.base import FAMILIES, resolve_entry

    entry = resolve_entry(cfg.name)
    family = FAMILIES.get(entry.family)
    if family.logit_bias is None:
        return None
    try:
        return family.logit_bias(entry, cfg)
    except Exception:  # offline, unknown: the job says so when it runs
        return None


def build_text_tower(cfg, image_size: int | None = None) -> TextTower:
    """The backbone's text tower; `image_size`: the image tower's input size, so that random weights give both
    towers from one model."""
    from radbench.backbones.base import FAMILIES, resolve_entry

    entry = resolve_entry(cfg.name)
    family = FAMILIES.get(entry.family)
    if family.text is None or not family.has_text(entry, cfg):
        raise BackboneError(f"backbone {cfg.display_name!r} has no text tower (zero-shot needs a CLIP-style model: "
                            "open_clip, e.g. open_clip:ViT-B-16/openai or biomedclip, or a transformers CLIP / "
                            "SigLIP model)")
    return family.text(entry, cfg, image_size)


def check_text_towers(study) -> None:
    """Every backbone a zero_shot entry runs on has a text tower: from the config alone, before the data is read or
    torch is imported (plan names the mistake in under a second)."""
    from radbench.errors import ConfigError

    for i, entry in enumerate(study.protocols):
        if entry.type != "zero_shot":
            continue
        for backbone in study.backbones:
            if entry.runs_on(backbone) and not has_text_tower(backbone):
                raise ConfigError(f"protocols[{i}].zero_shot: backbone {backbone.display_name!r} has no text tower "
                                  "(zero-shot needs a CLIP-style model: open_clip, e.g. open_clip:ViT-B-16/openai or "
                                  "biomedclip, or a transformers CLIP / SigLIP model); give the protocol "
                                  "`backbones: [...]` without it")


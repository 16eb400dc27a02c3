"""A backbone's architecture without its weights: built with random initialisation on PyTorch's meta device (no
memory, no download for timm models), so that `plan` and the start of `run` can check what a protocol asks of it
(blocks to keep or freeze) before any model is built for real."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from radbench.backbones.base import BackboneConfig


@dataclass(frozen=True)
class Architecture:
    depth: int | None  # transformer blocks (None: no blocks, e.g. a CNN)
    module_names: frozenset[str]  # the trunk's module names (last name part), e.g. {"qkv", "fc1", "conv1"}
    lora_aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()  # a LoRA target's names in this family (qkv -> ...)
    flops_per_image: float | None = None  # one forward pass at the probed size (torch's FLOP counter; None: unknown)

    def lora_missing(self, targets: list[str]) -> list[str]:
        """The LoRA targets this trunk has no module for."""
        return resolve_lora_targets(targets, self.module_names, dict(self.lora_aliases))[1]


def resolve_lora_targets(targets: list[str], present: set[str] | frozenset[str],
                         aliases: dict) -> tuple[list[str], list[str]]:
    """(module names LoRA adapts, targets with no module): a target is a module name of the trunk, or a name its
    family gives under another one (timm's `qkv` is query/key/value in transformers). Missing targets stay in the
    first list too, so that peft's own error names them where no check ran before."""
    resolved, missing = [], []
    for target in targets:
        options = [target] if target in present else list(aliases.get(target, [target]))
        found = [t for t in options if t in present]
        resolved += found or [target]
        if not found:
            missing.append(target)
    return resolved, missing


def architecture(cfg: BackboneConfig, image_size: int = 224, flops: bool = True) -> Architecture | None:
    """None where the architecture cannot be known here (a hub config that must be downloaded, say): its checks
    are then left to the run. A timm architecture is kept in the user's cache per timm and torch version, so a
    later `plan` checks it without importing timm (3 s here). With `flops=False` (the checks), the structure of a
    model radbench names (the zoo's timm models, timm's test models) comes from the table shipped with radbench,
    so even the first check of one needs no probe."""
    kwargs = json.dumps(cfg.model_kwargs, sort_keys=True, default=str)
    if not flops and (row := _shipped_row(cfg)) is not None:
        return _from_row(row)
    key = f"{cfg.name}|{kwargs}|{image_size}"
    cacheable = cfg.name.startswith("timm:") and _timm_listed(cfg.name)  # not a model registered at run time
    if cacheable and (known := _cached().get(key)) is not None:
        return _from_row(known)
    found = _probe(cfg.name, kwargs, image_size)
    if cacheable and found is not None:
        _remember(key, found)
    return found


def _from_row(row: dict) -> Architecture:
    return Architecture(depth=row["depth"], module_names=frozenset(row["module_names"]),
                        lora_aliases=tuple((k, tuple(v)) for k, v in row["lora_aliases"]),
                        flops_per_image=row.get("flops_per_image"))


def _row(found: Architecture) -> dict:
    return {"depth": found.depth, "module_names": sorted(found.module_names),
            "lora_aliases": [[k, list(v)] for k, v in found.lora_aliases]}


SHIPPED_TEST_MODELS = ("test_vit", "test_vit2", "test_vit3", "test_vit4", "test_convnext", "test_resnet")


def _timm_architecture_name(cfg: BackboneConfig) -> str | None:
    """The timm architecture (no pretrained tag) a backbone builds, where that needs no import of timm."""
    from radbench.backbones.base import BACKBONES

    if cfg.model_kwargs:
        return None  # changed by its kwargs: probed
    if cfg.name.startswith("timm:"):
        return cfg.name.split(":", 1)[1].split(".")[0]
    if cfg.name in BACKBONES and BACKBONES.get(cfg.name).family == "timm":
        return BACKBONES.get(cfg.name).model_id.split(".")[0]
    return None


def _shipped_row(cfg: BackboneConfig) -> dict | None:
    from radbench.backbones.shipped import shipped_models

    name = _timm_architecture_name(cfg)
    return None if name is None else shipped_models().get(name)


def shipped_table() -> dict:
    """The table shipped as architectures.json (backbones/shipped.py): every timm architecture of the zoo and
    timm's test models, probed on the meta device with the installed timm (`python -m radbench.backbones.architecture`
    writes it)."""
    from importlib.metadata import version

    from radbench.backbones.base import BACKBONES

    names = {BACKBONES.get(n).model_id for n in BACKBONES if BACKBONES.get(n).family == "timm"}
    names |= set(SHIPPED_TEST_MODELS)
    models = {}
    for model_id in sorted(names):
        found = _probe(f"timm:{model_id}", "{}", 224, False)
        if found is not None:
            models[model_id.split(".")[0]] = _row(found)
    return {"timm": ".".join(version("timm").split(".")[:2]), "models": models}


def _timm_listed(name: str) -> bool:
    from radbench.backbones.timm_family import timm_model_names

    return name.split(":", 1)[1].split(".")[0] in timm_model_names()


def _cache_file():
    import os
    from importlib.metadata import version

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radbench"
    return folder / f"architectures-timm{version('timm')}-torch{version('torch')}.json"


@lru_cache(maxsize=1)
def _cached() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _remember(key: str, found: Architecture) -> None:
    import contextlib
    import os

    known = dict(_cached())
    known[key] = {**_row(found), "flops_per_image": found.flops_per_image}
    _cached.cache_clear()
    path = _cache_file()
    with contextlib.suppress(OSError):  # an unwritable home: probed again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(known, sort_keys=True))
        temporary.replace(path)


@lru_cache(maxsize=64)
def _probe(name: str, model_kwargs: str, image_size: int, flops: bool = True) -> Architecture | None:
    import torch

    from radbench.backbones import build_backbone, resolve_entry

    cfg = BackboneConfig(name=name, weights="none", model_kwargs=json.loads(model_kwargs))
    entry = resolve_entry(name)
    if entry.family == "hf" and not Path(entry.model_id).is_dir():
        return None  # its architecture is a config on the hub: known once the run downloads it
    try:
        with torch.device("meta"):
            backbone = build_backbone(cfg, image_size)
    except Exception:  # noqa: BLE001 - any failure here only means "not known before the run"
        return None
    names = frozenset(module_name.rsplit(".", 1)[-1] for module_name, _ in backbone.model.named_modules())
    depth = backbone.depth if getattr(backbone.model, "blocks", None) is not None else None
    aliases = tuple((k, tuple(v)) for k, v in getattr(backbone, "lora_target_names", {}).items())
    return Architecture(depth=depth, module_names=names, lora_aliases=aliases,
                        flops_per_image=_flops(backbone.model, image_size) if flops else None)


def _flops(model, image_size: int) -> float | None:
    """FLOPs of one image through the trunk, counted on the meta device (nothing computed, nothing allocated)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    forward = getattr(model, "forward_features", model)
    try:
        with torch.device("meta"), FlopCounterMode(display=False) as counter, torch.no_grad():
            forward(torch.empty(1, 3, image_size, image_size))
    except Exception:  # noqa: BLE001 - a model the counter cannot follow: no estimate, nothing else lost
        return None
    return float(counter.get_total_flops()) or None


if __name__ == "__main__":
    from radbench.backbones.shipped import SHIPPED

    SHIPPED.write_text(json.dumps(shipped_table(), indent=1, sort_keys=True) + "\n")

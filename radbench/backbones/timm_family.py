"""timm backbones: build with `create_model`, preprocessing from `pretrained_cfg`, features via timm hooks."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from radbench.backbones.base import (
    FAMILIES,
    BackboneConfig,
    BackboneDescription,
    BackboneEntry,
    Family,
    FeatureBackbone,
    Normalisation,
    checkpoint_path,
    hub_revision,
)
from radbench.backbones.checkpoint import checkpoint_sha256, load_checkpoint
from radbench.backbones.hub import offline_if_unreachable
from radbench.backbones.layout import BundleLayout
from radbench.errors import BackboneError, DownloadError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def timm_model_exists(model_id: str) -> bool:
    from radbench.backbones.shipped import shipped_architecture_names

    name = model_id.split(".")[0]
    if name in shipped_architecture_names() or name in timm_model_names():  # the first: no list to build
        return True
    import timm  # not in the list: a model registered in this process (or a typo), asked of timm itself

    return timm.is_model(name)


@functools.lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str]:
    """timm's architecture names, kept in the user's cache per timm version: checking a `timm:` name while reading
    a study then costs a file read, not timm's import (4 s here, most of it torchvision and torch._dynamo)."""
    from importlib.metadata import version

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radbench"
    listed = folder / f"timm-{version('timm')}-models.txt"
    with contextlib.suppress(OSError):
        return frozenset(listed.read_text().split())
    import timm

    names = frozenset(timm.list_models())
    with contextlib.suppress(OSError):  # an unwritable home: checked by importing timm each time
        folder.mkdir(parents=True, exist_ok=True)
        temporary = listed.with_name(f"{listed.name}.{os.getpid()}")
        temporary.write_text("\n".join(sorted(names)))
        temporary.replace(listed)
    return names


def _create(model_id: str, pretrained: bool, image_size: int, kwargs: dict) -> torch.nn.Module:
    import timm

    kwargs = {"num_classes": 0, **kwargs}
    if pretrained:
        offline_if_unreachable()
    try:
        return timm.create_model(model_id, pretrained=pretrained, img_size=image_size, **kwargs)
    except TypeError as error:
        if "img_size" not in str(error):
            raise
        return timm.create_model(model_id, pretrained=pretrained, **kwargs)  # CNNs take any input size


def describe_timm(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    from timm.models import get_pretrained_cfg

    pretrained_cfg = get_pretrained_cfg(entry.model_id)
    identity: dict = {"family": "timm", "model_id": entry.model_id, "weights": cfg.weights_kind,
                      "model_kwargs": cfg.model_kwargs}
    if entry.pool != "default":  # the same weights pooled another way are other features
        identity["pool"] = entry.pool
    path = checkpoint_path(cfg)
    if path is not None:
        identity["checkpoint_sha256"] = checkpoint_sha256(path)
    elif cfg.weights_kind == "hub":
        identity["hub_id"] = (pretrained_cfg.hf_hub_id or pretrained_cfg.url) if pretrained_cfg else entry.model_id
    normalisation = Normalisation(
        mean=tuple(cfg.mean or (pretrained_cfg.mean if pretrained_cfg else IMAGENET_MEAN)),
        std=tuple(cfg.std or (pretrained_cfg.std if pretrained_cfg else IMAGENET_STD)),
        interpolation=pretrained_cfg.interpolation if pretrained_cfg else "bicubic",
    )
    return BackboneDescription(identity, normalisation)


def build_timm(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch

    kind = cfg.weights_kind
    kwargs = dict(cfg.model_kwargs)
    if entry.embed:  # CLIP towers: timm keeps the image projection as the `head` of the pretrained config
        from timm.models import get_pretrained_cfg

        kwargs.setdefault("num_classes", get_pretrained_cfg(entry.model_id).num_classes)
    try:
        if kind == "hub":
            model = _create(entry.model_id, True, image_size, kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # random-init weights are the same on every run, so caches stay valid
                model = _create(entry.model_id, False, image_size, kwargs)
    except Exception as error:
        where = "download hub weights for" if kind == "hub" else "build"
        hint = "; without network use `weights: none` or a local checkpoint path" if kind == "hub" else ""
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        error_type = DownloadError if kind == "hub" else BackboneError
        raise error_type(f"could not {where} backbone {cfg.name!r} (timm {entry.model_id}): {message}{hint}") from None
    path = checkpoint_path(cfg)
    if path is not None:
        classifier = model.pretrained_cfg.get("classifier") or "head"
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        load_checkpoint(model, path, tuple(f"{c}." for c in (*classifier, "head")))
    backbone = timm_feature_backbone(model, cfg, describe_timm(entry, cfg), entry, image_size)
    hub_id = (model.pretrained_cfg or {}).get("hf_hub_id")
    if kind == "hub" and hub_id:
        revision = hub_revision(hub_id, ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"))
        backbone.weights_revision = {"hub_revision": revision} if revision else {}
    return backbone


def timm_feature_backbone(model: torch.nn.Module, cfg: BackboneConfig, description: BackboneDescription,
                          entry: BackboneEntry, image_size: int, project=None) -> FeatureBackbone:
    """A built timm model as a FeatureBackbone: CLS-token ViTs give the token bundle, others a pooled vector.
    `project`: CLS -> a CLIP-style image embedding (open_clip towers on a timm trunk), offered as `embed`."""
    import torch

    _check_patch_size(model, image_size, cfg.name)
    model.eval().requires_grad_(False)
    is_token_model = (
        hasattr(model, "forward_intermediates")
        and getattr(model, "cls_token", None) is not None
        and getattr(model, "num_prefix_tokens", 0) > 0
    )
    if is_token_model:
        head = model.get_classifier() if entry.embed else None
        embed = int(head.out_features) if isinstance(head, torch.nn.Linear) else 0
        if project is not None:
            head = project
            with torch.no_grad():
                probe = torch.zeros(1, 1 + getattr(model, "num_prefix_tokens", 1), model.embed_dim)
                embed = int(project(probe if getattr(project, "full_tokens", False) else probe[:, 0]).shape[1])
        return FeatureBackbone(cfg.display_name, model, "tokens", model.embed_dim, description,
                               lambda x, layout: token_bundle(model, x, layout, head), embed=embed)
    if entry.pool == "last_block":  # e.g. SAM: the last block's tokens (NCHW), averaged over positions
        return FeatureBackbone(cfg.display_name, model, "pooled", model.embed_dim, description,
                               lambda x, layout: model.forward_intermediates(
                                   x, indices=1, intermediates_only=True)[-1].mean(dim=(2, 3)))
    # what pre_logits gives: VGG's 4096-d ConvMlp output, not its 512 convolutional channels (num_features)
    width = getattr(model, "head_hidden_size", None) or model.num_features
    return FeatureBackbone(cfg.display_name, model, "pooled", width, description,
                           lambda x, layout: model.forward_head(model.forward_features(x), pre_logits=True))


def _check_patch_size(model: torch.nn.Module, image_size: int, name: str) -> None:
    patch_embed = getattr(model, "patch_embed", None)
    patch = getattr(patch_embed, "patch_size", None)
    if patch is None or getattr(patch_embed, "dynamic_img_pad", False):
        return
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    if image_size % patch:
        raise BackboneError(
            f"backbone {name!r}: image_size {image_size} is not a multiple of its patch size {patch} "
            f"(try {image_size - image_size % patch} or {image_size + patch - image_size % patch})"
        )


def token_bundle(model: torch.nn.Module, images: torch.Tensor, layout: BundleLayout,
                 project: Callable | None = None) -> torch.Tensor:
    """CLS tokens of the last n blocks, then the mean patch token of the last block (all normed); then, for
    CLIP-style towers, `project` of the last CLS (the image embedding)."""
    import torch

    outputs = model.forward_intermediates(
        images, indices=layout.n_last, norm=True, output_fmt="NLC", intermediates_only=True,
        return_prefix_tokens=True,
    )
    cls_tokens = [prefix[:, 0] for _, prefix in outputs]
    patch_mean = outputs[-1][0].mean(dim=1)
    if layout.embed:  # a projection of the last CLS, or (`full_tokens`) of the whole last token sequence
        last = torch.cat([outputs[-1][1], outputs[-1][0]], dim=1) if getattr(project, "full_tokens", False) \
            else cls_tokens[-1]
        embedding = [project(last)]
    parts = [*cls_tokens, patch_mean] + (embedding if layout.embed else [])
    return torch.cat(parts, dim=1)


FAMILIES.add("timm", Family("timm", build_timm, timm_model_exists, describe_timm))

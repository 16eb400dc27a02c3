"""open_clip image towers: `open_clip:<model>/<pretrained tag>` (e.g. `open_clip:ViT-B-16/laion2b_s34b_b88k`) or
`open_clip:hf-hub:<repo>` (BiomedCLIP), with `weights:` hub, none, or a checkpoint file open_clip can load.
Normalisation and interpolation come from the model's preprocess config (its pretrained tag, its model config,
or the hub repo's open_clip_config.json). Towers built on a timm trunk (BiomedCLIP) are that timm model; open_clip's
own ViTs are seen through `OpenClipTrunk`. Features are taken before the CLIP projection."""

from __future__ import annotations

import json

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
from radbench.backbones.hub import offline_if_unreachable
from radbench.errors import BackboneError, DownloadError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def split_id(model_id: str) -> tuple[str, str | None]:
    """`ViT-B-16/laion2b_s34b_b88k` -> (model, tag); `hf-hub:org/repo` -> (that, None)."""
    if model_id.startswith("hf-hub:"):
        return model_id, None
    model, _, tag = model_id.partition("/")
    return model, tag or None


def openclip_exists(model_id: str) -> bool:
    import open_clip

    model, _ = split_id(model_id)
    return model.startswith("hf-hub:") or model in open_clip.list_models()


def _preprocess_cfg(model: str, tag: str | None, name: str) -> dict:
    import open_clip

    if model.startswith("hf-hub:"):
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(model.removeprefix("hf-hub:"), "open_clip_config.json")
        except Exception as error:  # offline, gated or missing: one line
            raise DownloadError(f"backbone {name!r}: cannot read {model}'s open_clip_config.json "
                                f"({type(error).__name__}); without network use a timm or hf backbone with a local "
                                "checkpoint") from None
        return json.loads(open(path).read()).get("preprocess_cfg", {})
    config = dict((open_clip.get_model_config(model) or {}).get("preprocess_cfg", {}))
    if tag:
        config.update({k: v for k, v in open_clip.get_pretrained_cfg(model, tag).items()
                       if k in ("mean", "std", "interpolation")})
    return config


def describe_openclip(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    model, tag = split_id(entry.model_id)
    config = _preprocess_cfg(model, tag, cfg.name)
    identity: dict = {"family": "open_clip", "model_id": entry.model_id, "weights": cfg.weights_kind}
    path = checkpoint_path(cfg)
    if path is not None:
        identity["checkpoint_sha256"] = checkpoint_sha256(path)
    normalisation = Normalisation(tuple(cfg.mean or config.get("mean", OPENAI_MEAN)),
                                  tuple(cfg.std or config.get("std", OPENAI_STD)),
                                  config.get("interpolation", "bicubic"))
    return BackboneDescription(identity, normalisation)


def _create(entry: BackboneEntry, cfg: BackboneConfig, image_size: int | None):
    """The whole open_clip model (both towers), weights as `cfg.weights` says."""
    import open_clip
    import torch

    model_name, tag = split_id(entry.model_id)
    path = checkpoint_path(cfg)
    pretrained = str(path) if path is not None else (tag if cfg.weights_kind == "hub" else None)
    if cfg.weights_kind == "hub":
        offline_if_unreachable()
    sized = {"force_image_size": image_size} if image_size else {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return open_clip.create_model(model_name, pretrained=pretrained, load_weights=cfg.weights_kind != "none",
                                          **sized, **cfg.model_kwargs)
    except Exception as error:
        from radbench.backbones.hf_family import _first_sentence

        text = " ".join(str(error).split())
        message = _first_sentence(text) or type(error).__name__
        if "WeightsUnpickler error:" in text:  # torch's long advice hides the cause at the end
            cause = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
            message = f"not a PyTorch checkpoint of tensors (torch.load, weights only: {cause.rstrip('.')})"
        if path is not None:  # the file is what the user can fix
            raise BackboneError(f"{path}: cannot load it as the weights of open_clip {model_name} (backbone "
                                f"{cfg.name!r}): {message}") from None
        error_type = DownloadError if cfg.weights_kind == "hub" else BackboneError
        raise error_type(f"could not build backbone {cfg.name!r} (open_clip {entry.model_id}): {message}") from None


def build_openclip(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch

    from radbench.backbones.adapters import OpenClipTrunk
    from radbench.backbones.timm_family import timm_feature_backbone

    model = _create(entry, cfg, image_size)
    visual = model.visual.eval().requires_grad_(False)
    description = describe_openclip(entry, cfg)
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and getattr(trunk, "cls_token", None) is None:  # SigLIP-style: no CLS token, pooled
        width = int(visual(torch.zeros(1, 3, image_size, image_size)).shape[1])
        return FeatureBackbone(cfg.display_name, visual, "pooled", width, description,
                               lambda x, layout: visual(x))  # the image embedding (encode_image, unnormalised)
    if trunk is not None:  # a timm model inside (BiomedCLIP): radbench's timm path, with open_clip's projection
        return timm_feature_backbone(trunk, cfg, description, entry, image_size, project=_timm_projection(visual))
    if not hasattr(visual, "transformer"):
        raise BackboneError(f"backbone {cfg.name!r}: open_clip tower {type(visual).__name__} is not supported")
    wrapped = OpenClipTrunk(visual).eval()
    from radbench.backbones.timm_family import token_bundle

    projection = visual.proj  # CLS (after ln_post) @ proj is CLIP's image embedding
    return FeatureBackbone(cfg.display_name, wrapped, "tokens", wrapped.embed_dim, description,
                           lambda x, layout: token_bundle(wrapped, x, layout, lambda cls: cls @ projection),
                           embed=0 if projection is None else int(projection.shape[1]))


class _TokensToEmbedding:
    """The last block's normed tokens -> open_clip's image embedding for a timm trunk: the trunk's own pooling and
    head (CLS, mean or attention pooling; norm), then open_clip's projection — what encode_image computes."""

    full_tokens = True

    def __init__(self, visual):
        self.visual = visual

    def __call__(self, tokens):
        return self.visual.head(self.visual.trunk.forward_head(tokens))


def _timm_projection(visual):
    return _TokensToEmbedding(visual)


def _has_text(entry: BackboneEntry, cfg: BackboneConfig) -> bool:
    return True  # every open_clip model is a CLIP-style pair of towers


def text_openclip(entry: BackboneEntry, cfg: BackboneConfig, image_size: int | None = None):
    """The text tower of the same model the image tower comes from: built at the image tower's input size, so that
    with random weights (seeded) both towers are one model's (the image size changes what the seed draws)."""
    import numpy as np
    import open_clip
    import torch

    from radbench.backbones.text import TextTower

    model = _create(entry, cfg, image_size).eval()
    model_name, _ = split_id(entry.model_id)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as error:  # an hf-hub tokenizer, offline
        raise DownloadError(f"backbone {cfg.name!r}: cannot load {model_name}'s tokenizer "
                            f"({type(error).__name__})") from None

    def encode(prompts: list[str], batch: int = 256) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model.encode_text(tokenizer(prompts[i:i + batch])).float().numpy()
                                   for i in range(0, len(prompts), batch)])

    bias = getattr(model, "logit_bias", None)
    return TextTower(encode, float(model.logit_scale.detach().exp()), None if bias is None else float(bias.detach()))


def _logit_bias(entry: BackboneEntry, cfg: BackboneConfig) -> bool | None:
    """From the model's open_clip config (SigLIP configs set init_logit_bias); None for a hub repo's."""
    import open_clip

    model, _ = split_id(entry.model_id)
    config = None if model.startswith("hf-hub:") else open_clip.get_model_config(model)
    return None if config is None else "init_logit_bias" in config


FAMILIES.add("open_clip", Family("open_clip", build_openclip, openclip_exists, describe_openclip, text_openclip,
                                  _has_text, listed_text=lambda entry: True, logit_bias=_logit_bias))
BACKBONES.add("biomedclip", BackboneEntry(
    "biomedclip", "open_clip", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    "BiomedCLIP ViT-B/16 image tower (PMC-15M)", 86.2, 224, 16, "clip", "mit", True))

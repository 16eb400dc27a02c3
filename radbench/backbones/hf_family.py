"""Hugging Face transformers vision models: `hf:<repo id>` (Rad-DINO `microsoft/rad-dino`, MSN `facebook/vit-msn-*`,
MedSigLIP `google/medsiglip-448`, BLIP vision towers, ...), or `weights:` a local folder written by
`save_pretrained` (config, weights and the image processor's config), which is how it runs without a hub.

The model is wrapped in `HFTrunk`, which speaks the small part of timm's interface radbench's extraction,
training and segmentation use (forward_features / forward_head / forward_intermediates / blocks / num_features),
so every protocol works on it unchanged. Preprocessing (mean, std, resampling, native size) comes from the
repository's image-processor config."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
from radbench.errors import BackboneError, DownloadError

# PIL resampling codes the image processors store -> torch interpolation modes
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _source(entry: BackboneEntry, cfg: BackboneConfig) -> str:
    path = checkpoint_path(cfg)
    return str(path) if path is not None else entry.model_id


def hf_exists(model_id: str) -> bool:
    """A repo id (`org/name`); whether it exists is known only when it is loaded (the hub may be offline)."""
    return model_id.count("/") == 1 and all(model_id.split("/"))


def _load(kind: str, source: str, name: str):
    import transformers

    transformers.utils.logging.disable_progress_bar()  # radbench's own bars say what is loading
    transformers.utils.logging.set_verbosity_error()
    try:
        return getattr(transformers, kind).from_pretrained(source)
    except OSError as error:
        text = " ".join(str(error).split())
        if "401" in text or "gated" in text.lower():
            raise DownloadError(f"backbone {name!r}: {source} is a gated model; accept its terms on the hub and log "
                                "in (`huggingface-cli login` or HF_TOKEN), or pass a local folder as `weights:`") from None
        if Path(source).exists():
            raise BackboneError(f"{source}: not a save_pretrained folder of a vision model ({text[:160]})") from None
        raise DownloadError(f"could not load backbone {name!r} ({source}): {text[:160]}; without network pass a "
                            "folder written by save_pretrained as `weights:`") from None


def describe_hf(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    source = _source(entry, cfg)
    processor = _load("AutoImageProcessor", source, cfg.name)
    identity: dict = {"family": "hf", "model_id": entry.model_id, "weights": cfg.weights_kind}
    if checkpoint_path(cfg) is not None:
        identity["files_sha256"] = _folder_digest(Path(source))
    mean = cfg.mean or tuple(processor.image_mean)
    std = cfg.std or tuple(processor.image_std)
    interpolation = RESAMPLE.get(int(getattr(processor, "resample", 3)), "bicubic")
    return BackboneDescription(identity, Normalisation(tuple(mean), tuple(std), interpolation))


def _folder_digest(folder: Path) -> str:
    """The weights' identity: a digest of every file in the save_pretrained folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def native_size(processor) -> int | None:
    """The input size the processor feeds its model (the crop when it crops)."""
    for size in (getattr(processor, "crop_size", None), getattr(processor, "size", None)):
        if isinstance(size, dict):
            value = size.get("height") or size.get("shortest_edge")
            if value:
                return int(value)
    return None


def build_hf(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch
    import transformers

    from radbench.backbones.adapters import HFTrunk

    if cfg.weights_kind == "none":  # the repository's architecture, freshly initialised (the same every run)
        config = _load("AutoConfig", _source(entry, cfg), cfg.name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = transformers.AutoModel.from_config(config, **cfg.model_kwargs)
    else:
        model = _load("AutoModel", _source(entry, cfg), cfg.name)
    trunk = HFTrunk(model)
    trunk.eval().requires_grad_(False)
    description = describe_hf(entry, cfg)
    if trunk.has_cls:
        from radbench.backbones.timm_family import token_bundle

        backbone = FeatureBackbone(cfg.display_name, trunk, "tokens", trunk.embed_dim, description,
                                   lambda x, layout: token_bundle(trunk, x, layout))
    else:
        backbone = FeatureBackbone(cfg.display_name, trunk, "pooled", trunk.embed_dim, description,
                                   lambda x, layout: trunk.forward_head(trunk.forward_features(x), pre_logits=True))
    if cfg.weights_kind == "hub":
        commit = hub_revision(entry.model_id, ("model.safetensors", "pytorch_model.bin", "config.json"))
        backbone.weights_revision = {"hub_revision": commit} if commit else {}
    return backbone


FAMILIES.add("hf", Family("hf", build_hf, hf_exists, describe_hf))

"""Hugging Face transformers vision models: `hf:<repo id>` (Rad-DINO `microsoft/rad-dino`, MSN `facebook/vit-msn-*`,
MedSigLIP `google/medsiglip-448`, BLIP vision towers, ...), or `weights:` a local folder written by
`save_pretrained` (config, weights and the image processor's config), which is how it runs without a hub.

The model is wrapped in `HFTrunk`, which speaks the small part of timm's interface radbench's extraction,
training and segmentation use (forward_features / forward_head / forward_intermediates / blocks / num_features),
so every protocol works on it unchanged. Preprocessing (mean, std, resampling, native size) comes from the
repository's image-processor config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
    hub_revision,
)
from radbench.backbones.hub import offline_if_unreachable
from radbench.errors import BackboneError, DownloadError, RadbenchError

# PIL resampling codes the image processors store -> torch interpolation modes
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _source(entry: BackboneEntry, cfg: BackboneConfig) -> str:
    path = checkpoint_path(cfg)
    return str(path) if path is not None else entry.model_id


def hf_exists(model_id: str) -> bool:
    """A repo id (`org/name`); whether it exists is known only when it is loaded (the hub may be offline)."""
    return model_id.count("/") == 1 and all(model_id.split("/"))


def _load(kind: str, source: str, name: str):
    if not Path(source).exists():
        offline_if_unreachable()
    import transformers

    transformers.utils.logging.disable_progress_bar()  # radbench's own bars say what is loading
    transformers.utils.logging.set_verbosity_error()
    try:
        return getattr(transformers, kind).from_pretrained(source)
    except Exception as error:  # noqa: BLE001 - a local folder's every failure is one line naming it
        if not isinstance(error, OSError):
            if Path(source).exists():
                text = " ".join(str(error).split())
                if "weights_only" in text or "Unpickl" in type(error).__name__:
                    raise BackboneError(f"{source}: its pytorch_model.bin holds code, not only tensors, and is "
                                        "refused (weights_only loading); use a trusted file or convert it to "
                                        "model.safetensors") from None
                raise BackboneError(f"{source}: cannot load it ({type(error).__name__}: {text[:300]})") from None
            raise
        text = " ".join(str(error).split())
        if "401" in text or "gated" in text.lower():
            raise DownloadError(f"backbone {name!r}: {source} is a gated model; accept its terms on the hub and log "
                                "in (`huggingface-cli login` or HF_TOKEN), or pass a local folder as `weights:`") from None
        if Path(source).exists():
            raise BackboneError(f"{source}: not a save_pretrained folder of a vision model ({_first_sentence(text)})"
                                ) from None
        where = ("the hub is unreachable (HF_HUB_OFFLINE=1 was set for this run) and it is not in the local hub "
                 "cache" if offline_if_unreachable() else _first_sentence(text).rstrip("."))
        raise DownloadError(f"could not load backbone {name!r} ({source}): {where}; without network pass a folder "
                            "written by save_pretrained as `weights:`") from None


def _first_sentence(text: str, limit: int = 400) -> str:
    """The library's message up to its first full stop (never cut mid-word), at most `limit` characters."""
    end = text.find(". ")
    sentence = text if end < 0 else text[:end + 1]
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + " …"


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_folder(folder: Path, name: str) -> None:
    """A save_pretrained folder has what a run loads — config.json (JSON), a whole weights file, the image
    processor's config — or one line says which file is missing or damaged and how to write it."""
    import json

    config = folder / "config.json"
    if not config.is_file():
        raise BackboneError(f"backbone {name!r}: {config} is missing: not a save_pretrained folder; write it with "
                            "model.save_pretrained(folder)")
    try:
        json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise BackboneError(f"backbone {name!r}: {config} is not JSON ({error}); write it again with "
                            "model.save_pretrained(folder)") from None
    found = [folder / f for f in WEIGHT_FILES if (folder / f).is_file()]
    if not found:
        raise BackboneError(f"backbone {name!r}: {folder} holds no weights ({' or '.join(WEIGHT_FILES[::2])}); "
                            "write them with model.save_pretrained(folder)")
    if found[0].name == "model.safetensors":
        _check_safetensors(found[0], name)
    if not (folder / "preprocessor_config.json").is_file():
        raise BackboneError(
            f"backbone {name!r}: {folder} has no preprocessor_config.json (the image processor was not saved: its "
            "mean, std and size are unknown); save it with AutoImageProcessor.from_pretrained(<hub id>)"
            ".save_pretrained(folder), or write one with image_mean, image_std and size")


def _check_safetensors(path: Path, name: str) -> None:
    """The header reads and the file holds every byte it declares (a copy cut short fails here, not mid-run)."""
    import json
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length)) if 8 + length <= size else None
    except (struct.error, ValueError, UnicodeDecodeError):
        header = None
    ends = [v["data_offsets"][1] for k, v in (header or {}).items() if k != "__metadata__" and isinstance(v, dict)]
    if header is None or 8 + length + max(ends, default=0) > size:
        raise BackboneError(f"backbone {name!r}: {path} is incomplete or damaged ({size} bytes); copy or save it "
                            "again")


def describe_hf(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    source = _source(entry, cfg)
    if checkpoint_path(cfg) is not None:
        check_folder(Path(source), cfg.name)
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


def _random_model(entry: BackboneEntry, cfg: BackboneConfig):
    """The repository's architecture, freshly initialised: the same every run, and the same for both towers."""
    import torch
    import transformers

    config = _load("AutoConfig", _source(entry, cfg), cfg.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.AutoModel.from_config(config, **cfg.model_kwargs)


def build_hf(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    from radbench.backbones.adapters import HFTrunk

    if cfg.weights_kind == "none":
        model = _random_model(entry, cfg)
    else:
        model = _load("AutoModel", _source(entry, cfg), cfg.name)
    trunk = HFTrunk(model)
    trunk.eval().requires_grad_(False)
    description = describe_hf(entry, cfg)
    if trunk.has_cls:
        from radbench.backbones.timm_family import token_bundle

        projection = getattr(model, "visual_projection", None)  # CLIP: normed CLS @ projection = image embedding
        backbone = FeatureBackbone(cfg.display_name, trunk, "tokens", trunk.embed_dim, description,
                                   lambda x, layout: token_bundle(trunk, x, layout, projection),
                                   embed=int(projection.out_features) if projection is not None else 0)
    else:
        backbone = FeatureBackbone(cfg.display_name, trunk, "pooled", trunk.embed_dim, description,
                                   lambda x, layout: trunk.forward_head(trunk.forward_features(x), pre_logits=True))
    if cfg.weights_kind == "hub":
        commit = hub_revision(entry.model_id, ("model.safetensors", "pytorch_model.bin", "config.json"))
        backbone.weights_revision = {"hub_revision": commit} if commit else {}
    return backbone


def hf_has_text(entry: BackboneEntry, cfg: BackboneConfig) -> bool:
    """A CLIP / SigLIP-style model: its config holds a text tower (read from a local folder's config.json, or the
    hub's config when it can be had; the named vision-language entries without either)."""
    source = _source(entry, cfg)
    if Path(source).is_dir():
        path = Path(source) / "config.json"
        return path.is_file() and "text_config" in json.loads(path.read_text())
    if entry.name in HF_TEXT_TOWERS:
        return True
    try:
        return getattr(_load("AutoConfig", source, cfg.name), "text_config", None) is not None
    except RadbenchError:
        return False


def text_hf(entry: BackboneEntry, cfg: BackboneConfig, image_size: int | None = None):
    """transformers CLIPModel / SiglipModel (and kin): get_text_features with the model's own tokenizer; with
    random weights the same seeded model the image tower comes from (build_hf)."""
    import numpy as np
    import torch

    from radbench.backbones.text import TextTower

    source = _source(entry, cfg)
    model = _random_model(entry, cfg) if cfg.weights_kind == "none" else _load("AutoModel", source, cfg.name)
    model = model.eval()
    tokenizer = _load("AutoTokenizer", source, cfg.name)
    # sigmoid-loss models were trained on prompts padded to the full length
    padding = "max_length" if "siglip" in getattr(model.config, "model_type", "") else True

    def encode(prompts: list[str], batch: int = 256) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch):
                tokens = tokenizer(prompts[i:i + batch], padding=padding, truncation=True, return_tensors="pt")
                features = model.get_text_features(**tokens)
                features = getattr(features, "pooler_output", features)  # newer transformers return an output
                out.append(features.float().numpy())
        return np.concatenate(out)

    bias = getattr(model, "logit_bias", None)
    return TextTower(encode, float(model.logit_scale.detach().exp()), None if bias is None else float(bias.detach()))


def hf_logit_bias(entry: BackboneEntry, cfg: BackboneConfig) -> bool:
    """SigLIP-style models (a sigmoid with a learned bias), from the repository's config."""
    return "siglip" in str(getattr(_load("AutoConfig", _source(entry, cfg), cfg.name), "model_type", ""))


HF_TEXT_TOWERS = {"medsiglip"}  # named entries that are vision-language pairs
FAMILIES.add("hf", Family("hf", build_hf, hf_exists, describe_hf, text_hf, hf_has_text,
                          listed_text=lambda entry: entry.name in HF_TEXT_TOWERS, logit_bias=hf_logit_bias))


# Names people type for the transformers models the seed studies and today's users name. Their architecture and
# sizes live in the hub repo's config, so the rows give what the model cards state (parameters are left blank:
# they cannot be checked here without the hub); `radbench list backbones` shows them with their hub ids.
HF_NAMED = [
    ("rad_dino", "microsoft/rad-dino", "Rad-DINO ViT-B/14 (DINOv2 on chest X-rays)", 518, 14, "msrla", True),
    ("medsiglip", "google/medsiglip-448", "MedSigLIP So400m/14 image tower (medical images)", 448, 14,
     "health-ai-developer-foundations", False),
    ("msn_vits16", "facebook/vit-msn-small", "MSN ViT-S/16", 224, 16, "apache-2.0", True),
    ("msn_vitb16", "facebook/vit-msn-base", "MSN ViT-B/16", 224, 16, "apache-2.0", True),
    ("msn_vitl16", "facebook/vit-msn-large", "MSN ViT-L/16", 224, 16, "apache-2.0", True),
    ("blip_vitb", "Salesforce/blip-image-captioning-base", "BLIP ViT-B/16 vision tower (captioning)", 384, 16,
     "bsd-3-clause", True),
]
for _name, _repo, _description, _native, _patch, _licence, _tokens in HF_NAMED:
    BACKBONES.add(_name, BackboneEntry(_name, "hf", _repo, _description, None, _native, _patch, "processor", _licence,
                                       _tokens))

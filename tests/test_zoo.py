"""The named backbones: what `radbench list backbones` shows is true of each architecture and its weights'
config; every entry builds and extracts; the tensor radbench feeds a model is what the model's own
preprocessing makes of the same real image."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from radbench.backbones import BACKBONES, BackboneConfig, build_backbone, describe_backbone
from radbench.data.base import ArrayImages
from radbench.features.extract import extract_bundle
from radbench.progress import Reporter

NORMALISATIONS = {"imagenet": (0.485, 0.456, 0.406), "clip": (0.481, 0.458, 0.408), "0.5": (0.5, 0.5, 0.5)}
TIMM_ENTRIES = [name for name, entry in BACKBONES.items() if entry.family == "timm"]


def small_kwargs(model_id: str) -> dict:
    """Cut deep models down so the giant ones build in a moment on a CPU (the wiring is what is tested)."""
    if model_id.startswith(("vit_", "deit_", "samvit_")):
        return {"depth": 2}
    if model_id.startswith("convnext_"):
        return {"depths": (1, 1, 1, 1)}
    return {}


@pytest.mark.parametrize("name", TIMM_ENTRIES)
def test_listed_metadata_is_true(name):
    entry = BACKBONES.get(name)
    config = timm.get_pretrained_cfg(entry.model_id).to_dict()
    with torch.device("meta"):
        model = timm.create_model(entry.model_id, pretrained=False, num_classes=0)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert entry.params_m == pytest.approx(params, abs=0.05), params
    assert entry.native == config["input_size"][-1]
    assert entry.licence == config.get("license")
    assert NORMALISATIONS[entry.normalisation] == tuple(round(v, 3) for v in config["mean"])
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    assert entry.patch == (patch[0] if isinstance(patch, (tuple, list)) else patch)
    assert entry.tokens == (getattr(model, "cls_token", None) is not None and hasattr(model, "forward_intermediates"))


HUB_ONLY = [name for name, entry in BACKBONES.items() if entry.model_id.startswith("hf-hub:") or entry.family == "hf"]


@pytest.mark.parametrize("name", HUB_ONLY)
def test_hub_only_entries_fail_offline_in_one_line(name):
    """Their architecture lives in the hub repo's config: offline, building or describing them is one clear error."""
    from radbench.errors import DownloadError

    with pytest.raises(DownloadError, match="without network"):
        describe_backbone(BackboneConfig(name=name, weights="none"))


@pytest.mark.parametrize("name", [n for n in BACKBONES if n not in HUB_ONLY])
def test_every_registered_backbone_builds_and_extracts(name):
    """Random init at a tiny input, through the same extraction as a study; the width is what the model gives."""
    entry = BACKBONES.get(name)
    size = 28 if entry.patch == 14 else 32
    backbone = build_backbone(BackboneConfig(name=name, weights="none", model_kwargs=small_kwargs(entry.model_id)),
                              size)
    layout = backbone.layout(2)
    assert layout.kind == ("tokens" if entry.tokens else "pooled")
    images = ArrayImages(np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8))
    preprocess = describe_preprocess(name, size)
    bundle = extract_bundle(backbone, layout, images, preprocess, device=torch.device("cpu"), precision="fp32",
                            batch_size=2, num_workers=0, reporter=Reporter(quiet=True), description=name)
    assert bundle.shape == (3, layout.width) and np.isfinite(bundle).all()
    if entry.pool == "last_block":
        assert layout.width == backbone.model.embed_dim  # SAM: block tokens, not the 256-d neck
    if name.endswith("_neck"):
        assert layout.width == 256


def describe_preprocess(name: str, size: int):
    from radbench.data.transforms import Preprocess

    norm = describe_backbone(BackboneConfig(name=name, weights="none")).normalisation
    return Preprocess(size, "resize", tuple(norm.mean), tuple(norm.std), norm.interpolation)


def test_sam_pooling_choices_are_different_features():
    tokens = describe_backbone(BackboneConfig(name="sam_vitb", weights="none")).identity
    neck = describe_backbone(BackboneConfig(name="sam_vitb_neck", weights="none")).identity
    assert tokens != neck  # so their feature caches never mix


@pytest.mark.parametrize("name", ["dinov2_vits14", "clip_vitb16", "openclip_vitl14", "siglip2_vitb16", "resnet152"])
def test_input_tensor_equals_timms_own_preprocessing(name, shared_data):
    """On a real CXR: radbench's tensor vs timm's eval transform built from the same pretrained config. The
    normalisation must be identical; the full pipeline differs only by the resize kernel (PIL's vs torch's
    antialiased bicubic), documented here as a tolerance. radbench never centre-crops (anatomy at the borders is
    kept), so the comparison uses timm's transform with crop_pct 1 on a square radiograph."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    entry = BACKBONES.get(name)
    path = shared_data / "nih_chestxray14_images" / "00000001_000.png"
    image = np.asarray(Image.open(path).convert("L"))
    size = 224
    config = resolve_data_config({}, pretrained_cfg=timm.get_pretrained_cfg(entry.model_id).to_dict())
    theirs = create_transform(input_size=(3, size, size), interpolation=config["interpolation"], mean=config["mean"],
                              std=config["std"], crop_pct=1.0)(Image.fromarray(image).convert("RGB"))
    preprocess = describe_preprocess(name, size)
    ours = preprocess(image)
    assert preprocess.mean == tuple(config["mean"]) and preprocess.std == tuple(config["std"])
    assert preprocess.interpolation == config["interpolation"]
    # the same resized pixels through both normalisations: identical
    unit = torch.from_numpy(np.asarray(Image.fromarray(image).convert("RGB").resize(
        (size, size), Image.BICUBIC if config["interpolation"] == "bicubic" else Image.BILINEAR),
        dtype=np.float32) / 255.0).permute(2, 0, 1)
    from torchvision.transforms.functional import normalize

    torch.testing.assert_close(preprocess.normalize(unit[:1]), normalize(unit, config["mean"], config["std"]),
                               rtol=0, atol=1e-5)
    # whole pipeline: only the resize kernel differs
    difference = (ours - theirs).abs()
    assert ours.shape == theirs.shape == (3, size, size)
    # measured: mean 0.002-0.005, max 0.008-0.017 (normalised units) over these five
    assert difference.mean() < 0.01 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_clip_towers_offer_their_projected_embedding(tmp_path, pneumonia_npz):
    """`embed` is the tower's projection of its last CLS token (timm keeps it as the head): the image embedding
    CLIP compares with text; the cache holds it beside the CLS grid, and a study can choose between them."""
    from radbench.config import parse_study
    from radbench.results import ResultsStore
    from radbench.runner import run_study
    from tests.conftest import tiny_study

    backbone = build_backbone(BackboneConfig(name="clip_vitb16", weights="none", model_kwargs={"depth": 2}), 32)
    layout = backbone.layout(1)
    assert layout.embed == 512
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        bundle = backbone.forward_bundle(images, layout)
        expected = backbone.model.forward_head(backbone.model.forward_features(images))  # with the projection
    torch.testing.assert_close(bundle[:, layout.columns("embed")], expected)

    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                     [{"logreg": {"C": [1.0], "features": ["cls", "embed"]}}])
    raw["backbones"] = [{"name": "clip_vitb16", "weights": "none", "model_kwargs": {"depth": 2}}]
    run_study(parse_study(raw, tmp_path), Reporter(quiet=True))
    candidates = ResultsStore(tmp_path / "out" / "results.sqlite").jobs().candidates.item()
    assert '"feature": "cls"' in candidates and '"feature": "embed"' in candidates


def test_embed_on_a_backbone_without_projection_is_one_line(tmp_path, pneumonia_npz, cli):
    from tests.conftest import tiny_study, write_study

    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                     [{"knn": {"k": [3], "features": ["embed"]}}])
    result = cli("run", write_study(tmp_path, raw))  # the job fails, is recorded, and the run ends non-zero
    failures = [line for line in result.stderr.splitlines() if line.startswith("  timm:test_vit x p / knn")]
    assert result.exit_code == 1 and len(failures) == 1 and "projected embedding of CLIP-style towers" in failures[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["dinov3_vits16", "dinov2_vits14_reg", "sam_vitb", "siglip2_vitb16", "clip_vitb16",
                                  "dinov3_convnext_tiny", "densenet201"])
def test_dense_maps_at_several_depths_for_segmentation(name):
    """What the U-Net decoder reads: 4 maps (blocks of a ViT with CLS and registers stripped, or CNN stages)."""
    from radbench.segmentation.decoders import dense_taps, tap_indices

    entry = BACKBONES.get(name)
    kwargs = {"depth": 4} if entry.model_id.startswith(("vit_", "samvit_")) else small_kwargs(entry.model_id)
    size = 56 if entry.patch == 14 else 64
    model = build_backbone(BackboneConfig(name=name, weights="none", model_kwargs=kwargs), size).model
    indices = tap_indices(model, 4)
    with torch.no_grad():
        maps = dense_taps(model, torch.rand(1, 3, size, size), indices)
    assert len(maps) == len(indices) >= 3 and all(m.ndim == 4 for m in maps)
    if entry.patch:  # ViTs: one position per patch; the embedding width as channels (SAM: through its 256-d neck)
        channels = 256 if entry.model_id.startswith("samvit_") else model.embed_dim
        assert all(m.shape[-2:] == (size // entry.patch,) * 2 and m.shape[1] == channels for m in maps)


def test_models_the_papers_use_that_radbench_does_not_offer_say_why(cli, tmp_path):
    listed = " ".join(cli("list", "backbones").stdout.split())
    assert "not offered: seem — SEEM's Focal-T image encoder" in listed and "vitaev2_s" in listed
    from radbench.backbones.base import resolve_entry
    from radbench.errors import BackboneError

    with pytest.raises(BackboneError, match="'seem_focalt' is not offered: SEEM's Focal-T"):
        resolve_entry("seem_focalt")

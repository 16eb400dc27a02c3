"""Hugging Face vision models (`hf:<repo>`), offline: tiny models written with save_pretrained load through
`weights:` and give the same features as the in-memory model; preprocessing follows the repo's image processor;
every protocol kind runs on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radbench.backbones import BackboneConfig, build_backbone, describe_backbone

transformers = pytest.importorskip("transformers")


def tiny(kind: str):
    small = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=32,
                 patch_size=8)
    if kind == "dinov2":
        return transformers.Dinov2Model(transformers.Dinov2Config(**small)), transformers.BitImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225])
    if kind == "dinov2_registers":
        return (transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(**small,
                                                                                           num_register_tokens=4)),
                transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    if kind == "msn":
        return transformers.ViTMSNModel(transformers.ViTMSNConfig(**small)), transformers.ViTImageProcessor(
            size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return (transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**small)),
            transformers.SiglipImageProcessor(size={"height": 32, "width": 32}))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each tiny model and its processor written with save_pretrained, as a user without hub access has them."""
    folders = {}
    for kind in ("dinov2", "dinov2_registers", "msn", "siglip"):
        torch.manual_seed(0)
        model, processor = tiny(kind)
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        folders[kind] = (folder, model.eval())
    return folders


@pytest.mark.parametrize("kind,prefix", [("dinov2", 1), ("dinov2_registers", 5), ("msn", 1)])
def test_token_models_give_the_in_memory_models_features(saved, kind, prefix):
    folder, model = saved[kind]
    backbone = build_backbone(BackboneConfig(name=f"hf:local/{kind}", weights=str(folder)), 48)
    layout = backbone.layout(2)
    assert layout.kind == "tokens" and layout.depth == 3
    images = torch.rand(2, 3, 48, 48)
    bundle = backbone.forward_bundle(images, layout)
    kwargs = {"interpolate_pos_encoding": True} if kind == "msn" else {}
    with torch.no_grad():
        out = model(pixel_values=images, output_hidden_states=True, **kwargs)
    norm = model.layernorm
    last = out.last_hidden_state
    torch.testing.assert_close(bundle[:, 32:64], last[:, 0])  # CLS of the last block
    torch.testing.assert_close(bundle[:, :32], norm(out.hidden_states[-2])[:, 0])  # CLS of the block before
    torch.testing.assert_close(bundle[:, 64:], last[:, prefix:].mean(1))  # mean patch token, registers left out


def test_pooled_model_gives_its_pooling_heads_output(saved):
    folder, model = saved["siglip"]
    backbone = build_backbone(BackboneConfig(name="hf:local/siglip", weights=str(folder)), 32)
    assert backbone.layout_kind == "pooled"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=images).pooler_output
    torch.testing.assert_close(backbone.forward_bundle(images, backbone.layout(1)), expected)


def test_weights_identity_is_the_folders_content(saved, tmp_path):
    import shutil

    folder, _ = saved["dinov2"]
    first = describe_backbone(BackboneConfig(name="hf:local/a", weights=str(folder))).identity["files_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert describe_backbone(BackboneConfig(name="hf:local/a", weights=str(copy))).identity["files_sha256"] == first
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"hidden_act"', '"hidden_act" '))
    assert describe_backbone(BackboneConfig(name="hf:local/a", weights=str(copy))).identity["files_sha256"] != first


@pytest.mark.parametrize("kind", ["dinov2", "siglip"])
def test_input_tensor_equals_the_image_processors(saved, kind, shared_data):
    """Mean, std and resampling come from the processor: the same resized pixels normalise identically, and the
    whole pipeline differs only by the resize kernel (PIL's vs torch's), on a real radiograph."""
    from PIL import Image

    from radbench.data.transforms import Preprocess

    folder, _ = saved[kind]
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    norm = describe_backbone(BackboneConfig(name=f"hf:local/{kind}", weights=str(folder))).normalisation
    assert norm.mean == tuple(processor.image_mean) and norm.std == tuple(processor.image_std)
    image = np.asarray(Image.open(shared_data / "nih_chestxray14_images" / "00000001_000.png").convert("L"))
    size = 224
    preprocess = Preprocess(size, "resize", norm.mean, norm.std, norm.interpolation)
    theirs = processor(images=Image.fromarray(image).convert("RGB"), size={"height": size, "width": size},
                       do_center_crop=False, return_tensors="pt")["pixel_values"][0]
    ours = preprocess(image)
    assert ours.shape == theirs.shape
    difference = (ours - theirs).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_every_protocol_kind_runs_on_an_hf_backbone(saved, tmp_path, pneumonia_npz, shared_data):
    from radbench.config import parse_study
    from radbench.progress import Reporter
    from radbench.results import ResultsStore
    from radbench.runner import run_study
    from tests.conftest import tiny_study

    folder, _ = saved["dinov2"]
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40},
                {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
                 "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127}]
    protocols = [{"knn": {"k": [3]}}, {"linear": {"epochs": 2, "lr": [0.1]}},
                 {"lora": {"epochs": 1, "lr": [1e-3], "batch_size": 16, "augment": None}},
                 {"segmentation": {"epochs": 1, "lr": [0.1], "batch_size": 4}}]
    raw = tiny_study(tmp_path, datasets, protocols)
    raw["backbones"] = [{"name": "hf:local/tiny-dinov2", "weights": str(folder)}]
    summary = run_study(parse_study(raw, tmp_path), Reporter(quiet=True))
    assert summary.jobs_run == 4
    jobs = ResultsStore(tmp_path / "out" / "results.sqlite").jobs()
    lora = jobs[jobs.protocol == "lora"].details.item()
    assert '"trainable_fraction"' in lora


def test_gated_repository_is_one_line(cli, tmp_path, monkeypatch, pneumonia_npz):
    from tests.conftest import tiny_study, write_study

    def gated(*args, **kwargs):
        raise OSError("You are trying to access a gated repo.\\n401 Client Error. Make sure to have access to it.")

    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", gated)
    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}])
    raw["backbones"] = [{"name": "hf:google/medsiglip-448"}]
    result = cli("run", write_study(tmp_path, raw))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "gated" in errors[0] and "HF_TOKEN" in errors[0]


def test_hub_model_records_its_snapshot_commit(saved, tmp_path):
    """`hf:<repo>` with hub weights, offline from a hub cache the test writes: the commit is recorded."""
    import shutil
    import subprocess
    import sys

    commit = "fedcba9876543210fedcba9876543210fedcba98"
    repo = tmp_path / "hub" / "models--radbench--tiny-dinov2"
    shutil.copytree(saved["dinov2"][0], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = ("from radbench.backbones import BackboneConfig, build_backbone; "
              "print(build_backbone(BackboneConfig(name='hf:radbench/tiny-dinov2'), 32).weights_revision)")
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"'hub_revision': '{commit}'" in result.stdout

"""Adaptation protocols: what trains and what must not, few-shot sampling, fine-tuning, resolution, costs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from radbench.backbones import BackboneConfig, build_backbone
from radbench.config import parse_study
from radbench.data import ADAPTERS, load_dataset
from radbench.data.transforms import Preprocess
from radbench.progress import Reporter
from radbench.protocols.few_shot import sample_patients
from radbench.runner import run_study
from radbench.training.loop import TrainingImages, TrainSettings, classification_loss, train
from radbench.training.models import (
    apply_bitfit,
    apply_lora,
    decapitate,
    freeze_first_blocks,
    fresh_classifier,
    optimizer_groups,
    parameter_counts,
)
from tests.conftest import tiny_study, write_study


@pytest.fixture(scope="module")
def pneumonia(pneumonia_npz):
    cfg = ADAPTERS.get("medmnist").config.model_validate(
        {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 48})
    return load_dataset(cfg)


def train_briefly(model, dataset, lr=5e-3, epochs=2):
    settings = TrainSettings(epochs, 16, lr, lr, 0.0, 1.0, 0.0, None, None, torch.device("cpu"), "fp32", 0, 0)
    preprocess = Preprocess(32, "resize", (0.5,) * 3, (0.5,) * 3)
    split = dataset.splits["train"]
    groups = optimizer_groups(model.trunk, model.head, lr, lr, 0.0, 1.0)
    data = TrainingImages(split.images, preprocess, dataset.targets("train"))
    train(model, groups, data, lambda logits, y: classification_loss(dataset.task, logits, y), settings,
          Reporter(quiet=True), "train")


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def vit():
    return build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)


def test_lora_trains_adapters_and_leaves_backbone_weights_bit_identical(vit, pneumonia):
    model = fresh_classifier(vit, 2)
    apply_lora(model, rank=4, alpha=8, dropout=0.0, targets=["qkv", "fc1"])
    before = snapshot(model)
    train_briefly(model, pneumonia)
    after = snapshot(model)
    base = [k for k in before if "lora_" not in k and not k.startswith("head.")]
    adapters = [k for k in before if "lora_" in k]
    assert len(base) > 20 and len(adapters) == 2 * 2 * 6  # A and B, 2 targets, 6 blocks
    for key in base:
        assert torch.equal(before[key], after[key]), key
    for key in adapters:  # gradients reached every adapter (the reference code trained only the head)
        assert not torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_lora_trains_under_one_percent_of_a_vit_s(tmp_path):
    backbone = build_backbone(BackboneConfig(name="dinov2_vits14", weights="none"), 56)
    model = fresh_classifier(backbone, 14)
    apply_lora(model, rank=8, alpha=16, dropout=0.1, targets=["qkv"])
    trainable, total = parameter_counts(model)
    assert trainable / total < 0.01


def test_bitfit_changes_biases_and_head_only(vit, pneumonia):
    model = fresh_classifier(vit, 2)
    apply_bitfit(model)
    before = snapshot(model)
    train_briefly(model, pneumonia)
    after = snapshot(model)
    biases = [k for k in before if k.endswith("bias") and not k.startswith("head")]
    others = [k for k in before if not k.endswith("bias") and not k.startswith("head")]
    assert all(not torch.equal(before[k], after[k]) for k in biases)
    assert all(torch.equal(before[k], after[k]) for k in others)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_progressive_freezing_keeps_frozen_blocks_bit_identical(vit, pneumonia):
    model = fresh_classifier(vit, 2)
    freeze_first_blocks(model, 4)
    before = snapshot(model)
    train_briefly(model, pneumonia)
    after = snapshot(model)
    frozen = [k for k in before if k.startswith(("trunk.patch_embed", "trunk.cls_token", "trunk.pos_embed"))
              or any(k.startswith(f"trunk.blocks.{i}.") for i in range(4))]
    trained = [k for k in before if any(k.startswith(f"trunk.blocks.{i}.") for i in (4, 5))]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_decapitated_model_has_k_blocks_and_matches_the_cached_feature(vit):
    layout = vit.layout(10**6)
    assert layout.n_last == 6 and layout.depth == 6
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        bundle = vit.forward_bundle(images, layout).numpy()
        for keep in (1, 3, 6):
            trunk = decapitate(fresh_classifier(vit, 2).trunk.eval(), keep)
            assert len(trunk.blocks) == keep
            cls = trunk.forward_features(images)[:, 0].numpy()
            np.testing.assert_allclose(bundle[:, layout.columns(f"block{keep}")], cls, atol=1e-5)


def test_few_shot_samples_whole_patients_n_per_class_reproducibly(nih_labels):
    from radbench.data.splits import label_matrix

    cfg = ADAPTERS.get("csv").config.model_validate({
        "name": "nih", "adapter": "csv", "path": str(nih_labels), "image_column": "Image Index",
        "label_columns": ["Infiltration", "Effusion", "Atelectasis"], "patient_column": "Patient ID"})
    train = load_dataset(cfg).splits["train"]
    labels01 = label_matrix(load_dataset(cfg).task, train.labels, 3)
    names = ("Infiltration", "Effusion", "Atelectasis")
    first, chosen = sample_patients(train.patient_ids, labels01, 2, seed=0, repeat=0, class_names=names)
    again, _ = sample_patients(train.patient_ids, labels01, 2, seed=0, repeat=0, class_names=names)
    other, _ = sample_patients(train.patient_ids, labels01, 2, seed=0, repeat=1, class_names=names)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert all(len(patients) == 2 for patients in chosen.values())
    picked = {p for patients in chosen.values() for p in patients}
    assert set(train.patient_ids[first]) == picked  # all images of exactly the chosen patients
    assert len(first) == np.isin(train.patient_ids, list(picked)).sum()
    for name, patients in chosen.items():  # each chosen patient really has the class
        c = names.index(name)
        assert all(labels01[train.patient_ids == p, c].max() == 1 for p in patients)


def test_few_shot_protocol_reports_one_point_per_shots_and_repeat(tmp_path, pneumonia_npz, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 120}]
    protocols = [{"few_shot": {"shots": [1, 8], "repeats": 3, "head": "logreg", "head_config": {"C": [0.1, 1.0]}}}]
    result = cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, protocols)))
    assert result.exit_code == 0, result.stderr
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "out", "--csv").stdout))
    auroc = rows[rows.metric == "auroc"]
    assert sorted(set(auroc.protocol)) == ["few_shot@1shot", "few_shot@8shot"]
    assert sorted(auroc.groupby("protocol")["repeat"].apply(list).iloc[0]) == [0, 1, 2]
    assert "runs" in cli("results", tmp_path / "out").stdout


def test_finetune_tiny_vit_beats_chance_and_records_costs(tmp_path, pneumonia_npz, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 200}]
    protocols = [{"finetune": {"epochs": 4, "lr": [1e-3], "head_lr": 1e-3, "layer_decay": 0.75, "batch_size": 32,
                               "augment": {"crop_scale": [0.8, 1.0], "rotation": 5}}},
                 {"linear": {"epochs": 5, "lr": [0.1]}}]
    result = cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, protocols)))
    assert result.exit_code == 0, result.stderr
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "out", "--csv").stdout))
    finetune = rows[rows.protocol == "finetune"].set_index("metric")["value"]
    assert finetune["auroc"] > 0.65
    for table in (finetune, rows[rows.protocol == "linear"].set_index("metric")["value"]):
        for cost in ("trainable_params", "total_params", "train_seconds", "infer_ms_per_image", "peak_mem_mb"):
            assert table[cost] > 0, cost
    assert finetune["trainable_params"] == finetune["total_params"]  # everything trains


def test_two_resolutions_interpolate_position_embeddings(tmp_path, pneumonia_npz):
    from timm.layers import resample_abs_pos_embed

    source = timm.create_model("test_vit", pretrained=False, num_classes=0)  # its native 160 px grid (10x10)
    torch.save(source.state_dict(), tmp_path / "vit160.pth")
    grids = {}
    for size in (32, 64):
        backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights=str(tmp_path / "vit160.pth")), size)
        side = size // 16
        expected = resample_abs_pos_embed(source.pos_embed, (side, side), num_prefix_tokens=1,
                                          interpolation="bicubic", antialias=True)
        torch.testing.assert_close(backbone.model.pos_embed, expected)
        grids[size] = backbone.model.pos_embed.shape[1]
    assert grids == {32: 1 + 4, 64: 1 + 16}
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}]
    raw = tiny_study(tmp_path, datasets, [{"finetune": {"epochs": 1, "lr": [1e-4], "refit": False}}])
    raw["backbones"] = [{"name": "timm:test_vit", "weights": str(tmp_path / "vit160.pth"), "label": f"vit@{s}",
                         "image_size": s} for s in (32, 64)]
    assert run_study(parse_study(raw, tmp_path), Reporter(quiet=True)).jobs_run == 2


def test_transformer_head_on_cached_and_recomputed_tokens(tmp_path, pneumonia_npz):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    head = {"epochs": 2, "lr": [1e-3], "width": 32, "num_heads": 2, "depth": 1}
    protocols = [{"transformer_head": head}, {"transformer_head": {**head, "name": "live", "token_cache_gb": 0}}]
    study = parse_study(tiny_study(tmp_path, datasets, protocols), tmp_path)
    assert run_study(study, Reporter(quiet=True)).jobs_run == 2
    from radbench.results import ResultsStore

    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    jobs = store.jobs().set_index("protocol")
    assert '"tokens_cached": true' in jobs.loc["transformer_head", "details"]
    assert '"tokens_cached": false' in jobs.loc["live", "details"]
    (tokens,) = (tmp_path / "out" / "features").glob("*-tokens/train.npy")
    assert np.load(tokens, mmap_mode="r").shape == (60, 5, 64)  # CLS + 2x2 patches at 32 px, 64 dims
    metrics = store.metrics().query("protocol == 'transformer_head'").set_index("metric")["value"]
    assert metrics["trainable_params"] < metrics["total_params"]  # the backbone is frozen

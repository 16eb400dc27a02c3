"""`radbench pretrain` on timm's test_vit and the shared chest X-rays: learning, the saved teacher as `weights:`,
per-checkpoint evaluation, views, loss re-computation, resume after kill -9."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radbench.backbones import BackboneConfig, build_backbone, describe_backbone
from radbench.pretrain.config import parse_pretrain
from radbench.pretrain.loop import run_pretraining
from radbench.pretrain.model import build_networks
from radbench.pretrain.state import saved_checkpoints
from radbench.progress import Reporter
from radbench.results import ResultsStore
from tests.conftest import ROOT, write_study

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # not test_vit's defaults: they must travel with the weights


def pretrain_raw(shared: Path, out: Path, **overrides) -> dict:
    raw = {
        "name": "cxr-dino", "output_dir": str(out),
        "backbone": {"name": "timm:test_vit", "weights": "none", "mean": list(MEAN), "std": list(STD)},
        "data": [{"adapter": "folder", "path": str(shared / "nih_chestxray14_images")},
                 {"adapter": "folder", "path": str(shared / "cxr_lung_seg_shenzhen" / "train_images")}],
        "image_size": 64, "epochs": 34, "batch_size": 16,
        "head": {"output_dim": 256, "hidden_dim": 128, "bottleneck_dim": 64},
        "optimizer": {"lr": 0.002, "warmup_epochs": 2, "min_lr": 0.0002},
        "teacher_momentum": [0.99, 1.0], "checkpoint_every": 50, "num_workers": 0,
    }
    raw.update(overrides)
    return raw


def parsed(raw: dict):
    return parse_pretrain(raw, ROOT)


@pytest.fixture(scope="module")
def trained(shared_data, pneumonia_npz, tmp_path_factory):
    """200 DINO steps (105 CXRs, batch 16, fixed views) with a kNN study evaluating every saved teacher."""
    folder = tmp_path_factory.mktemp("pretrain")
    study = write_study(folder, {
        "name": "eval", "output_dir": str(folder / "unused"), "image_size": 64, "batch_size": 64,
        "backbones": [{"name": "timm:test_vit", "weights": "none"}],  # replaced by each checkpoint
        "datasets": [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
        "protocols": [{"knn": {"k": [5]}}]}, "eval.yaml")
    raw = pretrain_raw(shared_data, folder / "out", evaluate={"study": str(study)})
    config = parsed(raw)
    summary = run_pretraining(config, Reporter(quiet=True), max_steps=200)
    return config, summary


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_pretraining_teaches_the_student_to_match_the_teacher(trained):
    config, summary = trained
    assert summary.steps_run == 200 and summary.images == 105  # 95 NIH + 10 Shenzhen images
    log = read_log(config.config.output_dir)
    assert [row["step"] for row in log] == list(range(1, 201))
    kl = np.array([row["dino_kl"] for row in log])
    # the cross-entropy itself rises while centring spreads the teacher's targets; its KL part is what is learned
    assert kl[-40:].mean() < 0.5 * kl[:20].mean(), (kl[:20].mean(), kl[-40:].mean())
    assert all(np.isfinite(row["loss"]) for row in log)
    assert log[0]["lr"] < log[20]["lr"] and log[-1]["momentum"] > log[0]["momentum"]  # warmup; momentum schedule


def test_saved_teacher_loads_as_weights_equal_to_the_trained_teacher(trained):
    config, _ = trained
    cfg = config.config
    checkpoints = dict(saved_checkpoints(cfg.output_dir))
    assert sorted(checkpoints) == [0, 50, 100, 150, 200]
    usage = json.loads((checkpoints[200].parent / "model.json").read_text())["use_as_backbone"]
    assert usage["label"] == "cxr-dino@step200"
    loaded = BackboneConfig(name=usage["name"], weights=usage["weights"])
    norm = describe_backbone(loaded).normalisation
    assert (tuple(norm.mean), tuple(norm.std)) == (MEAN, STD)  # the preprocessing it was trained with

    state = torch.load(cfg.output_dir / "state.pt", weights_only=True)
    student, teacher = build_networks(cfg)
    teacher.load_state_dict(state["teacher"])
    teacher.eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    from_file = build_backbone(loaded, 64).model
    start = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 64).model
    with torch.no_grad():
        expected = teacher.trunk.forward_features(images)
        assert torch.equal(from_file.forward_features(images), expected)
        assert not torch.allclose(start.forward_features(images), expected, atol=1e-3)


def test_each_checkpoint_is_evaluated_into_the_run_store(trained):
    config, _ = trained
    store = ResultsStore(config.config.output_dir / "results.sqlite")
    frame = store.metrics("test")
    labels = sorted(set(frame.backbone), key=lambda b: int(b.split("@step")[1]))
    assert labels == [f"cxr-dino@step{s}" for s in (0, 50, 100, 150, 200)]
    auroc = frame[frame.metric == "auroc"]
    assert len(auroc) == 5 and auroc.value.between(0, 1).all()


def test_report_draws_the_pretraining_curve(trained, tmp_path):
    from radbench.report.build import build_report

    config, _ = trained
    page, _ = build_report(config.config.output_dir, tmp_path / "report", resamples=50, patch_images=0,
                           warn=lambda m: None)
    figures = {p.name for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert "pretraining-log.png" in figures
    assert any(name.startswith("pretraining-pneumonia-cxr-dino") for name in figures), figures
    assert "Pretraining" in page.read_text()


def test_rerun_after_the_last_step_does_nothing(trained):
    config, _ = trained
    again = run_pretraining(config, Reporter(quiet=True), max_steps=200)
    assert again.steps_run == 0 and again.first_step == 200

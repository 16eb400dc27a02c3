"""The leaderboard and the notebook API on a real small study: two backbones x kNN/logreg x two seeds on
PneumoniaMNIST; numbers checked against the stored metrics, intervals and significance against their definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import radbench
from radbench.data.base import Task, labels_to_targets
from radbench.report.leaderboard import COLUMNS, _rank
from tests.conftest import run_cli, tiny_study, write_study


@pytest.fixture(scope="module")
def study_output(tmp_path_factory, pneumonia_npz):
    folder = tmp_path_factory.mktemp("board")
    breast = pneumonia_npz.parent / "breastmnist_resaved.npz"
    raw = tiny_study(folder, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80},
                              {"name": "b", "adapter": "medmnist", "path": str(breast), "limit": 60}],
                     [{"knn": {"k": [5]}}, {"linear": {"epochs": 3, "lr": [0.1], "normalize": "standard"}}],
                     seeds=[0, 1])
    raw["backbones"] = [{"name": "timm:test_vit", "weights": "none", "label": "vit_a"},
                        {"name": "timm:test_vit", "weights": "none", "label": "vit_b", "model_kwargs": {"depth": 1}}]
    run_cli("run", write_study(folder, raw), "--quiet")
    return folder / "out"


def test_leaderboard_columns_and_means_match_the_stored_metrics(study_output):
    board = radbench.load(study_output).leaderboard(resamples=300)
    assert list(board.columns) == COLUMNS
    stored = radbench.load(study_output).results
    for row in board.itertuples():
        values = stored[(stored.backbone == row.backbone) & (stored.protocol == row.protocol)
                        & (stored.metric == row.metric)].value
        values = values[stored.dataset[values.index] == row.dataset]
        assert row.runs == len(values) == 2
        assert row.mean == pytest.approx(values.mean(), abs=1e-9)
        assert row.ci_low <= row.ci_high
    auroc = board[board.metric == "auroc"]
    for _, group in auroc.groupby(["dataset", "protocol"]):
        assert sorted(group["rank"]) == [1, 2]
        assert group.sort_values("rank")["mean"].is_monotonic_decreasing
        assert not group[group["rank"] == 1].significantly_worse_than_best.item()


def test_report_command_writes_the_page_figures_and_tables(study_output, cli):
    import re

    result = cli("report", study_output, "--resamples", "200")
    assert result.exit_code == 0, result.stderr
    page = (study_output / "report" / "index.html").read_text()
    assert "What this study found" in page
    # kNN gives the same predictions for every seed: its interval says it covers the test patients only
    assert re.search(r"p / knn: vit_[ab] auroc 0\.\d{4} \(95 % CI 0\.\d{4}–0\.\d{4} over test patients \(runs "
                     r"identical\); 2 run\(s\), 80 test patients\), (not )?significantly", page)
    # a linear probe's seeds differ: two runs cannot settle a comparison nor estimate their spread, and the page
    # says so (the test-patient interval, labelled, never Student's t on one degree of freedom)
    assert re.search(r"p / linear: vit_[ab] auroc [01]\.\d{4} \(95 % CI [01]\.\d{4}–[01]\.\d{4} over test "
                     r"patients only \(2 runs: too few to estimate run-to-run spread; run ≥ 3 seeds\); 2 run\(s\), "
                     r"80 test patients\); too few runs to tell", page)
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    pngs = sorted((study_output / "report" / "figures").glob("*.png"))
    assert len(images) == len(pngs) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: opens from file:// offline
    figures = sorted(p.name for p in (study_output / "report" / "figures").iterdir())
    assert "leaderboard-p-knn-auroc.png" in figures and "leaderboard-p-knn-auroc.svg" in figures
    assert "ranking-auroc.png" in figures and "ranking-auroc.svg" in figures
    assert {"roc-p-knn.png", "cka-p.png", "pca-patches-b.png", "cost-p.png"} <= set(figures)
    tables = study_output / "report" / "tables"
    board = pd.read_csv(tables / "leaderboard.csv")
    assert list(board.columns) == COLUMNS and len(board) > 0
    assert (tables / "leaderboard.md").read_text().startswith("| backbone | dataset |")
    assert "\\toprule" in (tables / "leaderboard.tex").read_text()


def test_api_frames_and_comparisons(study_output):
    r = radbench.load(study_output)
    assert {"backbone", "metric", "value"} <= set(r.results.columns)
    assert set(r.costs.metric) >= {"train_seconds", "infer_ms_per_image"}
    per_dataset = r.predictions.groupby("dataset").sample_id.nunique()
    jobs_per_dataset = r.jobs.groupby("dataset").size()
    assert len(r.predictions) == (per_dataset * jobs_per_dataset).sum()
    jobs = r.jobs[(r.jobs.protocol == "knn") & (r.jobs.dataset == "p")].key.tolist()
    assert r.compare(jobs[0], jobs[0]) == 1.0  # a job against itself (DeLong, binary AUROC)
    intervals = r.bootstrap(jobs[0], resamples=200)
    assert intervals["auroc"].low <= intervals["auroc"].estimate <= intervals["auroc"].high


def test_a_clearly_worse_backbone_is_marked_and_holm_corrected():
    from radbench.report.stats import metrics_under_weights, patient_weights
    from radbench.report.verdicts import Runs

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    targets = labels_to_targets(Task.BINARY, y, 2)
    good = np.stack([1 - (y * 0.6 + rng.random(400) * 0.4), y * 0.6 + rng.random(400) * 0.4], 1)
    near = np.stack([1 - (y * 0.58 + rng.random(400) * 0.42), y * 0.58 + rng.random(400) * 0.42], 1)
    bad = rng.random((400, 2))
    weights = patient_weights(np.arange(400), 500, 0)
    entries = []
    for name, scores in (("good", good), ("near", near), ("bad", bad)):
        estimate = metrics_under_weights(Task.BINARY, targets, scores, np.ones((1, 400)))["auroc"]
        draws = metrics_under_weights(Task.BINARY, targets, scores, weights)["auroc"][None]
        entries.append(Runs(name, [(0, 0)], estimate, draws, [(tuple(range(400)), y, scores[:, 1])]))
    for runs, test in (("kept", "delong"), ("dropped", "paired bootstrap")):
        given = entries if runs == "kept" else [Runs(e.backbone, e.keys, e.estimates, e.draws, None) for e in entries]
        rows = {row[0]: dict(zip(COLUMNS, row)) for row in _rank("d", "knn", "auroc", given, 0.05)}
        assert rows["good"]["rank"] == 1 and rows["bad"]["rank"] == 3
        assert rows["bad"]["significantly_worse_than_best"] and rows["bad"]["p_vs_best"] < 0.01
        assert not rows["good"]["significantly_worse_than_best"]
        assert not rows["near"]["significantly_worse_than_best"] and rows["near"]["p_vs_best"] > 0.05
        assert rows["good"]["ci_low"] <= rows["good"]["mean"] <= rows["good"]["ci_high"]
        assert rows["bad"]["test"] == test and rows["good"]["test"] == ""
        assert rows["good"]["interval"] == "test patients (one run)" and rows["near"]["verdict"] == \
            "not significantly different"


def test_points_of_a_protocol_become_curves(tmp_path, pneumonia_npz, cli):
    from radbench.report.figures import curve_points

    board = pd.DataFrame({"backbone": ["a"] * 4, "dataset": ["d"] * 4, "metric": ["auroc"] * 4,
                          "protocol": ["few_shot@1shot", "few_shot@4shot", "decapitation@8blocks",
                                       "progressive_freezing@frozen4 (lr=[0.1])"],
                          "mean": [0.6, 0.7, 0.8, 0.9], "ci_low": [0.5] * 4, "ci_high": [0.95] * 4})
    points = curve_points(board, "auroc")
    assert points.curve.tolist() == ["few_shot", "few_shot", "decapitation", "progressive_freezing (lr=[0.1])"]
    assert points.x.tolist() == [1, 4, 8, 4]
    assert points.axis.tolist()[1:] == ["patients per class (shots)", "blocks kept", "blocks frozen"]

    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}],
                     [{"few_shot": {"shots": [1, 4], "repeats": 2, "head": "knn", "head_config": {"k": [1]}}}])
    assert cli("run", write_study(tmp_path, raw)).exit_code == 0
    assert cli("report", tmp_path / "out", "--resamples", "100").exit_code == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert 'alt="p / few_shot"' in page
    assert (tmp_path / "out" / "report" / "figures" / "curve-p-few_shot-auroc.png").stat().st_size > 5000


def test_one_model_at_several_resolutions_gives_a_resolution_curve(tmp_path, pneumonia_npz, cli):
    from radbench.report.build import _resolutions

    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}],
                     [{"knn": {"k": [5]}}])
    raw["backbones"] = [{"name": "timm:test_vit", "weights": "none", "label": f"vit@{size}", "image_size": size}
                        for size in (32, 48)] + [{"name": "timm:test_vit", "weights": "none", "label": "other",
                                                  "model_kwargs": {"depth": 1}}]
    assert cli("run", write_study(tmp_path, raw)).exit_code == 0
    sizes = _resolutions(radbench.load(tmp_path / "out").store.jobs()).set_index("backbone")
    assert sizes.image_size.to_dict() == {"vit@32": 32, "vit@48": 48}  # "other" ran at one size only
    assert cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0").exit_code == 0
    assert (tmp_path / "out" / "report" / "figures" / "resolution-p-knn-auroc.png").is_file()

"""The whole report on a study with every kind of job (kNN, linear, few-shot, fine-tune, LoRA, BitFit on binary
and multi-label X-rays; a segmentation decoder on lung masks): each figure family is there, and the numbers behind
them are recomputed independently from the stored predictions and per-case scores."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import radbench
from tests.browser import FLAGS, chromium, cut_tables, open_page
from tests.conftest import run_cli, tiny_study, write_study


@pytest.fixture(scope="module")
def report(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("page")
    medmnist = shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz"
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(medmnist), "limit": 150},
                {"name": "nih", "adapter": "csv", "path": str(shared_data / "nih_chestxray14_images" / "labels.csv"),
                 "image_column": "Image Index", "label_columns": ["Infiltration", "Effusion", "Atelectasis"],
                 "patient_column": "Patient ID"},
                {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
                 "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
                 "split_fractions": [0.6, 0.2, 0.2]}]
    protocols = [{"knn": {"k": [5]}}, {"linear": {"epochs": 3, "lr": [0.1]}},
                 {"few_shot": {"shots": [1, 4], "repeats": 2, "head": "knn", "head_config": {"k": [1]}}},
                 {"finetune": {"epochs": 1, "lr": [1e-3]}}, {"lora": {"epochs": 1, "lr": [1e-3]}},
                 {"bitfit": {"epochs": 1, "lr": [1e-3]}},
                 {"segmentation": {"decoder": "linear", "epochs": 3, "lr": [0.05], "batch_size": 3}}]
    raw = tiny_study(folder, datasets, protocols, seeds=[0, 1])
    raw["backbones"] = [{"name": "timm:test_vit", "weights": "none", "label": "vit_a"},
                        {"name": "timm:test_vit", "weights": "none", "label": "vit_b", "model_kwargs": {"depth": 1}}]
    run_cli("run", write_study(folder, raw), "--quiet")
    run_cli("report", folder / "out", "--resamples", "200")
    return folder / "out"


def test_every_figure_family_is_written_and_embedded(report):
    figures = {p.stem for p in (report / "report" / "figures").glob("*.png")}
    assert {p.stem for p in (report / "report" / "figures").glob("*.svg")} == figures
    expected = {"roc-p-knn", "roc-p-finetune", "per-class-auroc-nih", "curve-p-few_shot-auroc", "adaptation-p-auroc",
                "adaptation-nih-auroc", "cost-p", "cka-p", "cka-nih", "pca-patches-p", "pca-patches-lungs",
                "leaderboard-lungs-segmentation-dice", "dice-per-case-lungs", "ranking-auroc"}
    assert expected <= figures, expected - figures
    page = (report / "report" / "index.html").read_text()
    embedded = re.findall(r'<img alt="([^"]*)"\s+(?:title="[^"]*"\s+)?src="data:image/png;base64,', page)
    overlays = [alt for alt in embedded if alt.startswith(("vit_a / segmentation", "vit_b / segmentation"))]
    assert len(embedded) == len(figures) + len(overlays) and len(overlays) >= 2  # the overlay gallery
    captions = re.findall(r"<figcaption>([^<]*)</figcaption><img", page)
    assert captions == overlays  # each overlay says, visibly, whose prediction it shows
    assert "right: the first component" not in page  # the PCA caption describes the panels there are
    assert "Study status" not in page  # every planned job is stored
    assert "<title>radbench report — test</title>" in page  # the study's name


def test_per_class_auroc_table_equals_sklearn_on_the_stored_predictions(report):
    from sklearn.metrics import roc_auc_score

    table = pd.read_csv(report / "report" / "tables" / "per-class-auroc-nih.csv")
    predictions = radbench.load(report).predictions
    for row in table.itertuples():
        runs = predictions[(predictions.dataset == "nih") & (predictions.backbone == row.backbone)
                           & (predictions.protocol == row.protocol)]
        values = []
        for _, run in runs.groupby("job"):
            known = run[f"target_{row[3]}"].notna()
            values.append(roc_auc_score(run[f"target_{row[3]}"][known], run[f"score_{row[3]}"][known]))
        assert row.auroc == pytest.approx(np.mean(values), abs=1e-9)
        first = runs[runs.job == runs.job.iloc[0]]
        assert row.positives == int(first[f"target_{row[3]}"].sum())  # the heatmap's "(n pos)" per class
    assert len(table) == 2 * 5 * 3  # backbones x protocols (few-shot points left out) x classes


def test_segmentation_rows_of_the_leaderboard_are_case_means(report):
    board = pd.read_csv(report / "report" / "tables" / "leaderboard.csv")
    rows = board[board.dataset == "lungs"]
    assert set(rows.metric) == {"dice", "iou", "dice_jaccard_mean"} and set(rows["rank"]) == {1, 2}
    samples = radbench.load(report).samples
    for row in rows.itertuples():
        per_job = samples[(samples.backbone == row.backbone) & (samples.metric == row.metric)].groupby("job").value
        assert row.mean == pytest.approx(per_job.mean().mean(), abs=1e-9) and row.runs == 2
        if row.metric == "dice_jaccard_mean":  # Montgomery's mean of Dice and Jaccard, case by case
            both = samples[(samples.backbone == row.backbone) & samples.metric.isin(["dice", "iou"])]
            halves = both.pivot_table(index=["job", "sample_id"], columns="metric", values="value").mean(axis=1)
            assert row.mean == pytest.approx(halves.groupby("job").mean().mean(), abs=1e-9)
        assert row.ci_low <= row.mean <= row.ci_high


def test_costs_table_tells_training_apart_from_probing(report):
    costs = pd.read_csv(report / "report" / "tables" / "costs.csv").set_index(["backbone", "dataset", "protocol"])
    assert list(costs.columns) == ["trainable_params", "train_seconds", "infer_ms_per_image", "peak_mem_mb"]
    full = costs.loc[("vit_a", "p", "finetune"), "trainable_params"]
    assert full > costs.loc[("vit_a", "p", "lora"), "trainable_params"] > costs.loc[("vit_a", "p", "linear"),
                                                                                   "trainable_params"]
    assert full > costs.loc[("vit_a", "p", "bitfit"), "trainable_params"]


def test_confusion_counts_equal_sklearn():
    from sklearn.metrics import confusion_matrix

    from radbench.report.plots import confusion_counts, confusion_matrices

    rng = np.random.default_rng(0)
    true, predicted = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_array_equal(confusion_counts(true, predicted, 4), confusion_matrix(true, predicted, labels=range(4)))
    figure = confusion_matrices([("a", true, predicted), ("b", true, true)], ["0", "1", "2", "3"], "t")
    assert len(figure.axes) == 2


def test_pca_map_separates_an_object_from_its_background():
    from radbench.report.patches import pca_rgb

    rng = np.random.default_rng(0)
    tokens = rng.normal(scale=0.1, size=(2, 8, 8, 16))
    tokens[:, 2:6, 2:6, 0] += 3.0  # a centred object whose patches differ along one direction
    rgb, foreground = pca_rgb(tokens)
    assert rgb.shape == (2, 8, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    assert (foreground == expected).all()  # the border is background whatever the SVD's sign
    _, flipped = pca_rgb(-tokens)
    assert (flipped == expected).all()


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_the_page_loads_every_figure_in_a_real_browser(report, tmp_path):
    """Headless Chromium opens index.html from file://: every image decoded, no console error; the screenshot is
    kept next to the test's files."""
    import subprocess

    loaded, images, console = open_page(report / "report" / "index.html", tmp_path)
    assert loaded == images > 0 and not console, (loaded, images, console)
    screenshot = tmp_path / "report.png"
    subprocess.run([chromium(), *FLAGS, f"--screenshot={screenshot}", "--window-size=1200,1600",
                    (report / "report" / "index.html").as_uri()], capture_output=True, timeout=120)
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
def test_no_table_is_cut_at_1400_px(report, tmp_path):
    """At a 1400 px window every table fits, or scrolls sideways inside its own box; the page itself never
    scrolls sideways."""
    cut, scroll, view = cut_tables(report / "report" / "index.html", tmp_path, 1400)
    assert not cut, cut
    assert scroll <= view, (scroll, view)


def test_operating_points_per_finding_equal_the_stored_per_class_metrics(report):
    table = pd.read_csv(report / "report" / "tables" / "clinical-nih.csv")
    stored = radbench.load(report).results
    per_class = table[table.metric.str.contains("/")]
    assert {m.split("/")[1] for m in per_class.metric} == {"Infiltration", "Effusion", "Atelectasis"}
    for row in per_class.itertuples():
        values = stored[(stored.dataset == "nih") & (stored.protocol == row.protocol) & (stored.backbone == row.backbone)
                        & (stored.metric == row.metric)].value
        assert row.mean == pytest.approx(values.mean(), abs=1e-9, nan_ok=True), row.metric
        assert np.isnan(row.mean) or row.ci_low <= row.mean + 1e-12 <= row.ci_high + 2e-12


def test_cost_panels_leave_out_a_cost_equal_everywhere_and_start_at_zero():
    from radbench.report.plots import cost_scatter

    points = pd.DataFrame({"backbone": ["a", "b", "a"], "protocol": ["knn", "knn", "linear"], "mean": [0.7, 0.8, 0.75],
                           "trainable_params": [0.0, 0.0, 770.0], "train_seconds": [1.0, 2.0, 40.0],
                           "infer_ms_per_image": [3.0, 3.0, 3.0], "peak_mem_mb": [770.0, 900.0, 800.0]})
    figure = cost_scatter(points, "auroc", "p: auroc against cost")
    labels = [axis.get_xlabel() for axis in figure.axes]
    assert not any("inference" in label for label in labels)  # 3.0 for every point: no axis to read
    assert "inference (ms / image) 3" in figure._suptitle.get_text()
    memory = next(axis for axis in figure.axes if "memory" in axis.get_xlabel())
    assert memory.get_xlim()[0] == 0  # 770–900, drawn from 0: no 740–800 axis for a value of 770


def test_a_one_point_curve_is_a_point_with_its_interval():
    from matplotlib.collections import PolyCollection

    from radbench.report.figures import curve_plot

    points = pd.DataFrame({"backbone": ["a", "b"], "x": [4, 4], "mean": [0.6, 0.7], "ci_low": [0.5, 0.65],
                           "ci_high": [0.7, 0.75], "axis": ["patients per class"] * 2})
    axis = curve_plot(points, "p", "few_shot", "auroc").axes[0]
    assert not any(isinstance(c, PolyCollection) for c in axis.collections)  # no band around a single x
    assert len(axis.containers) == 2 and "one point" in axis.get_title()  # an error bar per backbone


def test_the_cost_note_names_the_machine_and_its_load():
    from radbench.report.costs import machine_note

    jobs = pd.DataFrame({"timings": ['{"device": "cpu", "cpus": 2, "load_1min": 1.2, "host": "h"}',
                                     '{"device": "cpu", "cpus": 2, "load_1min": 3.5, "host": "h"}']})
    note = machine_note(jobs)
    assert "cpu (1 host, 2 CPU cores)" in note and "1.2–3.5" in note and "busy machine" in note
    assert "did not record" in machine_note(pd.DataFrame({"timings": ['{"protocol_seconds": 1}']}))

"""Does the winner generalise (issue 24): external test sets, subgroups and corrupted tests from one study file, on
real data — PneumoniaMNIST (the source) tested on the NIH ChestX-ray14 images (its Pneumonia finding), NIH's sex, age
and view position from the official Data_Entry file. Every number recomputes from the exported predictions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tests.conftest import run_cli, tiny_study, write_study

PROTOCOLS = [{"knn": {"k": [5]}}, {"logreg": {"C": [0.1, 1.0]}},
             {"finetune": {"epochs": 1, "lr": [1e-4], "batch_size": 32, "augment": None}},
             {"transformer_head": {"epochs": 1, "width": 16, "depth": 1, "num_heads": 2, "batch_size": 32}}]
TRAINED = ("knn", "logreg", "finetune", "transformer_head")


def _datasets(shared_data: Path, corruptions=None, **nih) -> list[dict]:
    return [
        {"name": "pneumonia", "adapter": "medmnist", "limit": 60,
         "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz"),
         "external_tests": [{"dataset": "nih", "split": "all"}],
         "corruptions": corruptions or {"kinds": ["gaussian_noise", "jpeg"], "severities": [1, 5]}},
        {"name": "nih", "adapter": "nih", "path": str(shared_data / "nih_chestxray14_labels"),
         "images": str(shared_data / "nih_chestxray14_images"), "missing_images": "skip", "external_only": True,
         "subgroups": ["Patient Gender", "Patient Age", "View Position"], "age_bins": [0, 40, 60, 120], **nih},
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("generalisation")
    study = write_study(folder, tiny_study(folder, _datasets(shared_data), PROTOCOLS))
    log = run_cli("run", study).output
    run_cli("report", folder / "out")
    (folder / "predictions.csv").write_text(run_cli("results", folder / "out", "--predictions").stdout)
    return folder, study, log


def _predictions(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "predictions.csv", dtype={"sample_id": str, "patient_id": str})


def _nih_entries(shared_data: Path) -> pd.DataFrame:
    table = pd.read_csv(shared_data / "nih_chestxray14_labels" / "Data_Entry_2017_v2020.csv.gz")
    return table.set_index("Image Index")


def test_rows_for_every_extra_test_set(run):
    folder, _, _ = run
    protocols = set(pd.read_csv(folder / "out" / "report" / "tables" / "robustness.csv").protocol)
    assert protocols == set(TRAINED)
    with sqlite3.connect(folder / "out" / "results.sqlite") as conn:
        stored = {row[0] for row in conn.execute("SELECT protocol FROM jobs")}
    for protocol in TRAINED:
        assert {f"{protocol}@external:nih", f"{protocol}@corrupt:gaussian_noise:1", f"{protocol}@corrupt:jpeg:5"} \
            <= stored


def test_external_rows_are_nih_images_with_their_pneumonia_label(run, shared_data):
    folder, _, _ = run
    rows = _predictions(folder)
    external = rows[rows.protocol == "logreg@external:nih"]
    entries = _nih_entries(shared_data)
    assert len(external) == 87  # split: all — every NIH image on disk
    expected = [float("Pneumonia" in entries.loc[s, "Finding Labels"].split("|")) for s in external.sample_id]
    np.testing.assert_array_equal(external["target_pneumonia"].to_numpy(), expected)
    assert list(external.patient_id) == [str(entries.loc[s, "Patient ID"]) for s in external.sample_id]
    table = pd.read_csv(folder / "out" / "report" / "tables" / "external.csv")
    assert set(table.classes) == {"pneumonia"} and set(table.external_images) == {87}


def test_external_scores_are_the_source_model_unchanged(run):
    """logreg refit on PneumoniaMNIST train+val (its chosen C) applied to NIH's cached features: the stored external
    scores, recomputed with scikit-learn from the cache files."""
    folder, _, _ = run
    cache = folder / "out" / "features"
    manifests = {json.loads(p.read_text())["dataset"]["name"]: p.parent for p in cache.glob("*/manifest.json")}
    from radbench.backbones.layout import BundleLayout

    def bundle(name: str, splits):
        layout = BundleLayout(**json.loads((manifests[name] / "manifest.json").read_text())["layout"])
        return np.concatenate([np.load(manifests[name] / f"{s}.npy").astype(np.float32)
                               for s in splits])[:, layout.columns("cls")]

    jobs = pd.DataFrame(sqlite3.connect(folder / "out" / "results.sqlite").execute(
        "SELECT protocol, selected FROM jobs").fetchall(), columns=["protocol", "selected"])
    C = json.loads(jobs[jobs.protocol == "logreg"].selected.iloc[0])["C"]
    from sklearn.preprocessing import StandardScaler

    train = bundle("pneumonia", ["train", "val"])
    study_rows = _predictions(folder)
    source = study_rows[study_rows.protocol == "logreg"]
    labels = _pneumonia_labels(folder)
    scaler = StandardScaler().fit(train)
    model = LogisticRegression(C=C, max_iter=1000, random_state=0).fit(scaler.transform(train), labels)
    external = bundle("nih", ["train", "val", "test"])
    expected = model.predict_proba(scaler.transform(external))[:, 1]
    stored = study_rows[study_rows.protocol == "logreg@external:nih"]
    order = _nih_order(folder)
    np.testing.assert_allclose(stored.set_index("sample_id").loc[order, "score_pneumonia"], expected, atol=1e-6)
    assert len(source) == 60


def _pneumonia_labels(folder: Path) -> np.ndarray:
    from radbench.config import load_study
    from radbench.data import load_dataset

    study = load_study(folder / "study.yaml")
    dataset = load_dataset(study.datasets[0])
    return np.concatenate([dataset.splits[s].labels for s in ("train", "val")]).astype(int)


def _nih_order(folder: Path) -> list[str]:
    from radbench.config import load_study
    from radbench.data import load_dataset

    study = load_study(folder / "study.yaml")
    dataset = load_dataset(study.datasets[1])
    return [str(s) for split in dataset.splits.values() for s in split.sample_ids]


def test_external_and_corrupted_metrics_recompute_with_sklearn(run):
    folder, _, _ = run
    rows = _predictions(folder)
    with sqlite3.connect(folder / "out" / "results.sqlite") as conn:
        stored = dict(conn.execute("SELECT j.protocol, m.value FROM metrics m JOIN jobs j ON j.key = m.job_key "
                                   "WHERE m.split = 'test' AND m.name = 'auroc'").fetchall())
    checked = 0
    for protocol, group in rows.groupby("protocol"):
        if "@" not in protocol:
            continue
        targets = group["target_pneumonia"].to_numpy()
        assert stored[protocol] == pytest.approx(roc_auc_score(targets, group["score_pneumonia"]), abs=1e-9)
        checked += 1
    assert checked == 20  # 4 protocols x (1 external + 2 corruptions x 2 severities)


def test_subgroups_recompute_from_exported_predictions(run, shared_data):
    folder, _, _ = run
    rows = _predictions(folder)
    external = rows[rows.protocol == "knn@external:nih"].set_index("sample_id")
    entries = _nih_entries(shared_data).loc[external.index]
    assert list(external["group_Patient Gender"]) == list(entries["Patient Gender"])
    ages = entries["Patient Age"].to_numpy()
    assert list(external["group_Patient Age"]) == ["0-39" if a < 40 else "40-59" if a < 60 else "60-119" for a in ages]
    table = pd.read_csv(folder / "out" / "report" / "tables" / "subgroups.csv")
    mine = table[(table.protocol == "knn@external:nih")]
    assert set(mine.column) == {"Patient Gender", "Patient Age", "View Position"}
    compared = 0
    for row in mine.itertuples():
        members = external[external[f"group_{row.column}"] == row.group]
        assert row.images == len(members)
        y = members["target_pneumonia"].to_numpy()
        if 0 < y.sum() < len(y):
            assert row.value == pytest.approx(roc_auc_score(y, members["score_pneumonia"]), abs=1e-9)
            compared += 1
        assert row.flagged  # a handful of NIH pneumonia cases: every group under 20 positives, shown and flagged
    assert compared >= 2
    gaps = pd.read_csv(folder / "out" / "report" / "tables" / "subgroup-gaps.csv")
    assert (gaps.worst == "–").all()  # flagged groups are never named worst


def test_corrupted_features_cost_one_test_extraction_each(run):
    folder, _, log = run
    lines = [line for line in log.splitlines() if "extract" in line and "~" in line]
    extracted = {line.split("/")[1].strip() + "/" + line.split("/")[2].split()[0] for line in lines
                 if line.count("/") >= 2}
    assert extracted == {f"pneumonia~{k}{s}/test" for k in ("gaussian_noise", "jpeg") for s in (1, 5)}


def test_report_shows_all_three(run):
    folder, _, _ = run
    page = (folder / "out" / "report" / "index.html").read_text()
    for heading in ("Does it generalise?", "External test sets", "Subgroups", "Robustness to acquisition shifts"):
        assert heading in page
    summary = pd.read_csv(folder / "out" / "report" / "tables" / "robustness-summary.csv")
    assert set(summary.protocol) == set(TRAINED)
    assert summary.relative_robustness.between(0, 1.5).all()
    board = pd.read_csv(folder / "out" / "report" / "tables" / "leaderboard.csv")
    assert not board.protocol.str.contains("@corrupt:").any()


def test_rerun_resumes_and_a_new_severity_adds_only_its_rows(run, shared_data, cli):
    folder, study, _ = run
    again = cli("run", study)
    assert again.exit_code == 0 and "0 of 4 jobs to run" in again.output
    with sqlite3.connect(folder / "out" / "results.sqlite") as conn:
        before = dict(conn.execute("SELECT key, finished_at FROM jobs").fetchall())
    more = tiny_study(folder, _datasets(shared_data, {"kinds": ["gaussian_noise", "jpeg"], "severities": [1, 3, 5]}),
                      PROTOCOLS[:2])
    widened = write_study(folder, more, "widened.yaml")
    assert cli("run", widened).exit_code == 0
    with sqlite3.connect(folder / "out" / "results.sqlite") as conn:
        after = dict(conn.execute("SELECT key, finished_at FROM jobs").fetchall())
        added = {row[0] for row in conn.execute("SELECT protocol FROM jobs WHERE key NOT IN (%s)" %
                                                ",".join("?" * len(before)), list(before))}
    assert {k: after[k] for k in before} == before  # nothing stored is rewritten
    assert added == {f"{p}@corrupt:{k}:3" for p in ("knn", "logreg") for k in ("gaussian_noise", "jpeg")}


@pytest.mark.parametrize("change, message", [
    ({"external_tests": [{"dataset": "nih", "classes": {"pneumonia": "Pneumonai"}}]}, "'Pneumonai' is not a class"),
    ({"external_tests": [{"dataset": "nih", "classes": {"pneumona": "Pneumonia"}}]}, "'pneumona' is not a class"),
    ({"corruptions": ["gaussian_nosie"]}, "unknown corruption 'gaussian_nosie' (did you mean 'gaussian_noise'?)"),
    ({"corruptions": {"severities": [0, 6]}}, "severity 0 is outside 1-5"),
    ({"external_tests": ["nhi"]}, "'nhi' is not a dataset of this study (did you mean 'nih'?)"),
])
def test_bad_shift_settings_are_one_line_before_any_model(tmp_path, shared_data, cli, change, message):
    datasets = _datasets(shared_data)
    datasets[0] = {**datasets[0], **change}
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, PROTOCOLS[:1]))
    result = cli("run", study)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "building backbone" not in result.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_no_matched_class_and_bad_subgroup_columns(tmp_path, shared_data, cli):
    breast = {"name": "breast", "adapter": "medmnist", "path": str(shared_data / "medmnist" / "breastmnist_resaved.npz"),
              "limit": 20, "external_tests": ["nih"]}
    study = write_study(tmp_path, tiny_study(tmp_path, [breast, _datasets(shared_data)[1]], PROTOCOLS[:1]))
    result = cli("run", study)
    assert result.exit_code == 2 and "no class of this dataset" in result.output and "classes: {mine: theirs}" in \
        result.output
    nih = {**_datasets(shared_data)[1], "subgroups": ["Patient Sex"]}
    study = write_study(tmp_path, tiny_study(tmp_path, [_datasets(shared_data)[0], nih], PROTOCOLS[:1]), "b.yaml")
    result = cli("run", study)
    assert result.exit_code == 2 and "'Patient Sex' is not in" in result.output
    assert "did you mean 'Patient Age'?" in result.output or "Patient Gender" in result.output
    labels = pd.read_csv(shared_data / "nih_chestxray14_images" / "labels.csv")
    labels["Site"] = ""
    labels.to_csv(tmp_path / "labels.csv", index=False)
    csv = {"name": "nihcsv", "adapter": "csv", "path": str(tmp_path / "labels.csv"),
           "image_root": str(shared_data / "nih_chestxray14_images"), "image_column": "Image Index",
           "label_columns": ["Pneumonia", "Effusion"], "patient_column": "Patient ID", "subgroups": ["Site"]}
    study = write_study(tmp_path, tiny_study(tmp_path, [csv], PROTOCOLS[:1]), "c.yaml")
    result = cli("run", study)
    assert result.exit_code == 2 and "column 'Site' is empty for every one of the" in result.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_corruptions_follow_medmnist_c_and_are_reproducible(shared_data):
    from radbench.data.corruptions import PARAMETERS, corrupt

    assert PARAMETERS["xray"]["gaussian_noise"] == (0.04, 0.08, 0.12, 0.18, 0.26)  # MedMNIST-C chestmnist
    assert PARAMETERS["xray"]["jpeg"] == (50, 30, 15, 10, 7)
    assert PARAMETERS["ct"]["shot_noise"] == (200, 100, 50, 25, 15)  # organamnist
    images = np.load(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")["test_images"][:8]
    image = images[0]
    for kind in PARAMETERS["xray"]:
        for severity in (1, 5):
            out = corrupt(image, kind, severity, rng=np.random.default_rng(3))
            assert out.dtype == image.dtype and out.shape == image.shape
            np.testing.assert_array_equal(out, corrupt(image, kind, severity, rng=np.random.default_rng(3)))
    x = image.astype(float) / 255
    noise = [np.std(corrupt(image, "gaussian_noise", s, rng=np.random.default_rng(0)) / 255 - x) for s in (1, 5)]
    assert noise[0] < noise[1]
    low = corrupt(image, "contrast", 5).astype(float)
    assert low.std() == pytest.approx(0.4 * image.astype(float).std(), rel=0.05)
    gamma = corrupt(image, "gamma", 5)
    np.testing.assert_allclose(gamma, np.round((x ** 1.6) * 255), atol=1)


@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3)])
def test_blur_equals_medmnist_c_bit_for_bit_on_a_bright_border(shape):
    """MedMNIST-C's GaussianBlur is torchvision's gaussian_blur(img, kernel_size) on the PIL image (its padding
    reflects without repeating the edge pixel); a bright border is where another padding would differ."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    from radbench.data.corruptions import PARAMETERS, corrupt

    image = (np.random.default_rng(0).random(shape) * 120).astype(np.uint8)
    image[:2] = 255
    image[:, -3:] = 250
    for severity, kernel in enumerate(PARAMETERS["xray"]["blur"], start=1):
        expected = np.array(TF.gaussian_blur(Image.fromarray(image), kernel_size=kernel))
        np.testing.assert_array_equal(corrupt(image, "blur", severity), expected, err_msg=f"kernel {kernel}")


def test_robustness_tables_hold_numbers_in_their_run_columns(run):
    folder, _, _ = run
    tables = folder / "out" / "report" / "tables"
    rows = pd.read_csv(tables / "robustness.csv")
    assert (rows.corruption == "clean").any()
    for column in ("seed", "repeat", "severity"):
        assert pd.api.types.is_integer_dtype(rows[column]), (column, rows[column].unique()[:3])
    assert set(rows.repeat) == {0}
    assert "Series.repeat" not in (tables / "robustness.md").read_text() + (tables / "robustness.tex").read_text()


def test_extra_test_metrics_come_from_the_scores_as_stored():
    """Scores that float32 merges into ties: the stored AUROC of an extra test set is the one its stored (float32)
    predictions give, not the float64 scores' (which order every pair)."""
    from types import SimpleNamespace

    from radbench.data.base import Task
    from radbench.results.prediction_blobs import SCORE_DTYPE
    from radbench.study.execute import evaluation_record

    y = np.array([0, 1, 0, 1, 0, 1])
    positive = 0.5 + np.array([0, 1e-9, 2e-9, 3e-9, 0.1, 0.2])  # float64: every positive above a negative but one
    scores = np.stack([1 - positive, positive], axis=1)
    targets = np.eye(2)[y]
    extra = SimpleNamespace(name="external:other", task=Task.BINARY, targets=targets, class_names=("no", "yes"),
                            columns=np.array([0, 1]), details={}, groups_dataset="other", scores=lambda s: s,
                            sample_ids=[f"s{i}" for i in range(6)], patient_ids=[f"p{i}" for i in range(6)])
    result = SimpleNamespace(predict=lambda name: scores, val_scores=None)
    prepared = SimpleNamespace(inputs=SimpleNamespace(targets={}))
    job = SimpleNamespace(key="job", label="logreg", selection_metric="auroc")
    common = dict(key="job", study="s", backbone="b", dataset="d", protocol="logreg", protocol_type="logreg", seed=0,
                  repeat=0, config={}, selected={}, candidates=[], details={}, timings={}, val_metrics={},
                  test_metrics={}, class_names=("no", "yes"))
    record = evaluation_record(job, prepared, result, extra, common, SimpleNamespace(info=lambda *a: None))
    stored = np.asarray(record.test_scores, dtype=SCORE_DTYPE)[:, 1]
    assert roc_auc_score(y, stored) != roc_auc_score(y, positive)  # the case this guards
    assert record.test_metrics["auroc"] == roc_auc_score(y, stored)


def test_age_bins_always_apply_with_open_ended_groups_and_missing_only_for_missing():
    """A numeric column with few distinct values is binned too when age_bins are given; ages below the first edge
    or at / above the last are open-ended groups, never '(missing)'; unsorted or repeated edges are one line."""
    from types import SimpleNamespace

    from radbench.data.subgroups import MISSING, group_values

    cfg = SimpleNamespace(name="d", age_bins=[40, 60, 80])
    ages = pd.Series([35, 45, 45, 61, 80, 95, None, ""])  # six distinct numbers: under the 12 that force bins
    assert list(group_values(cfg, "Age", ages)) == ["<40", "40-59", "40-59", "60-79", ">=80", ">=80", MISSING,
                                                    MISSING]
    plain = SimpleNamespace(name="d", age_bins=None)
    assert list(group_values(plain, "Age", pd.Series([35, 45, None]))) == ["35", "45", MISSING]
    from pydantic import ValidationError

    from radbench.data.medmnist import MedmnistConfig

    for bins in ([60, 40, 80], [40, 40, 80], [40]):
        with pytest.raises(ValidationError, match="increasing order"):
            MedmnistConfig(name="d", adapter="medmnist", path=__file__, age_bins=bins)

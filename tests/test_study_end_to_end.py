"""The issue's contract YAML, end to end on real PneumoniaMNIST and real NIH ChestX-ray14 images."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import run_cli, write_study


def write_nih_manifest(labels_csv, folder):
    """data/labels.csv in the contract's layout: path, Atelectasis, Effusion, patient_id, split (patient-level)."""
    nih = pd.read_csv(labels_csv)
    folder.mkdir(parents=True, exist_ok=True)
    patients = nih["Patient ID"].astype(str)
    # a fixed patient-level split: every image of a patient lands in the same split
    bucket = patients.map(lambda p: int(p) % 10)
    split = np.where(bucket < 6, "train", np.where(bucket < 8, "val", "test"))
    relative = [os.path.relpath(labels_csv.parent / name, folder) for name in nih["Image Index"]]
    manifest = pd.DataFrame({"path": relative, "Atelectasis": nih["Atelectasis"], "Effusion": nih["Effusion"],
                             "patient_id": patients, "split": split})
    manifest.to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def contract_study(tmp_path, pneumonia_npz):
    """The YAML from the issue, with offline backbones (random init) and small images for CPU speed."""
    return {
        "name": "pneumonia-quick",
        "output_dir": "runs/pneumonia-quick",
        "seeds": [0],
        "image_size": 64,
        "backbones": [
            {"name": "dinov2_vits14", "weights": "none", "image_size": 56},  # patch 14
            {"name": "timm:test_vit", "weights": "none"},
        ],
        "datasets": [
            {"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 400},
            {"name": "my-cxr", "adapter": "csv", "path": "data/labels.csv", "image_column": "path",
             "label_columns": ["Atelectasis", "Effusion"], "patient_column": "patient_id", "split_column": "split"},
        ],
        "protocols": [
            {"knn": {"k": [10, 20, 50]}},
            {"linear": {"epochs": 20, "lr": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]}},
            {"logreg": {"C": [0.01, 0.1, 1.0, 10.0]}},
        ],
    }


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, pneumonia_npz, nih_labels):
    root = tmp_path_factory.mktemp("contract")
    write_nih_manifest(nih_labels, root / "data")
    study = write_study(root, contract_study(root, pneumonia_npz))
    return root, study, run_cli("run", study)


def test_contract_yaml_runs_every_job(finished_study, cli):
    root, _, result = finished_study
    assert "jobs: 12 run, 0 already done" in result.stderr
    rows = pd.read_csv(io.StringIO(cli("results", root / "runs/pneumonia-quick", "--csv").stdout))
    assert {"backbone", "dataset", "protocol", "seed", "metric", "value"} <= set(rows.columns)
    assert set(rows["backbone"]) == {"dinov2_vits14", "timm:test_vit"}
    assert set(rows["dataset"]) == {"pneumonia", "my-cxr"}
    assert set(rows["protocol"]) == {"knn", "linear", "logreg"}
    auroc = rows[rows["metric"] == "auroc"]
    assert len(auroc) == 12 and auroc["value"].between(0, 1).all()
    # multi-label: per-class AUROCs are reported next to the macro mean
    assert {"auroc/Atelectasis", "auroc/Effusion"} <= set(rows.loc[rows["dataset"] == "my-cxr", "metric"])


def test_second_run_extracts_and_runs_nothing(finished_study, cli):
    _, study, _ = finished_study
    result = cli("run", study)
    assert result.exit_code == 0
    assert "jobs: 0 run, 12 already done; extracted features for 0 images" in result.stderr


def test_new_protocol_reuses_cached_features(finished_study, cli, pneumonia_npz):
    import yaml

    root, study, _ = finished_study
    config = yaml.safe_load(study.read_text())
    config["protocols"].append({"knn": {"name": "knn-wide", "k": [5, 100]}})
    config["seeds"] = [0, 1]
    extended = write_study(root, config, "extended.yaml")
    result = cli("run", extended)
    assert result.exit_code == 0, result.stderr
    # 2 backbones x 2 datasets x (1 new protocol x 2 seeds + 3 old protocols x 1 new seed)
    assert "jobs: 20 run, 12 already done; extracted features for 0 images" in result.stderr


def test_predictions_csv_recomputes_the_stored_auroc(finished_study, cli):
    root, _, _ = finished_study
    out = root / "runs/pneumonia-quick"
    predictions = pd.read_csv(io.StringIO(cli("results", out, "--predictions").stdout))
    metrics = pd.read_csv(io.StringIO(cli("results", out, "--csv").stdout))
    assert {"backbone", "dataset", "protocol", "seed", "sample_id"} <= set(predictions.columns)
    checked = 0
    for (backbone, dataset, protocol, seed), rows in predictions.groupby(["backbone", "dataset", "protocol", "seed"]):
        stored = metrics[(metrics.backbone == backbone) & (metrics.dataset == dataset) & (metrics.protocol == protocol)
                         & (metrics.seed == seed)].set_index("metric")["value"]
        classes = [c.removeprefix("target_") for c in rows.columns if c.startswith("target_") and rows[c].notna().any()]
        if dataset == "pneumonia":
            assert classes == ["normal", "pneumonia"]
            expected = roc_auc_score(rows["target_pneumonia"], rows["score_pneumonia"])
        else:
            per_class = []
            for name in ["Atelectasis", "Effusion"]:
                known = rows[f"target_{name}"].notna()
                y = rows.loc[known, f"target_{name}"]
                if y.nunique() == 2:
                    value = roc_auc_score(y, rows.loc[known, f"score_{name}"])
                    assert stored[f"auroc/{name}"] == pytest.approx(value, abs=1e-12)
                    per_class.append(value)
            expected = np.mean(per_class)
        assert stored["auroc"] == pytest.approx(expected, abs=1e-12)
        checked += 1
    assert checked >= 12 and checked == metrics.groupby(["backbone", "dataset", "protocol", "seed"]).ngroups


def test_results_table_prints_mean_and_std(finished_study, cli):
    root, _, _ = finished_study
    table = cli("results", root / "runs/pneumonia-quick").stdout
    assert "dinov2_vits14" in table and "auroc" in table and "logreg" in table


def test_nih_fourteen_findings_patient_level(tmp_path, nih_labels, cli):
    """The official NIH label file as it is: 14 findings, Patient ID, no split column (patient-level split)."""
    import json
    import sqlite3

    from tests.conftest import NIH_FINDINGS, tiny_study

    dataset = {"name": "nih", "adapter": "csv", "path": str(nih_labels), "image_column": "Image Index",
               "label_columns": NIH_FINDINGS, "patient_column": "Patient ID"}
    study = write_study(tmp_path, tiny_study(tmp_path, [dataset]))
    result = cli("run", study)
    assert result.exit_code == 0, result.stderr
    assert "multilabel, 14 classes" in result.stderr
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "out", "--csv").stdout))
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        details = {key: json.loads(d) for key, d in conn.execute("SELECT key, details FROM jobs")}
        split_sizes = [json.loads(c)["dataset"]["split_sizes"] for (c,) in conn.execute("SELECT config FROM jobs")]
    assert sum(split_sizes[0].values()) == 87
    assert set(rows["job"]) == set(details)
    for key, job_rows in rows.groupby("job"):
        job_details = details[key]
        scored = int(job_rows.set_index("metric").loc["auroc_classes", "value"])
        skipped = job_details.get("test", {}).get("auroc_skipped_classes", [])
        assert scored + len(skipped) == 14  # every class is either scored or named as skipped
        assert len(job_rows[job_rows.metric.str.startswith("auroc/")]) == scored

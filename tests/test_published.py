"""Published numbers beside the study's own (issue 36): Huix et al.'s tables shipped as data, and the report's
"Published vs this study" on stores whose scores are drawn to match part of Table 2, to sit far below it, or to come
from random weights."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from radbench.references import load_reference
from radbench.results import JobRecord, ResultsStore
from tests.conftest import run_cli, tiny_study, write_study


def test_huix_tables_are_shipped_number_by_number():
    table = load_reference("huix2024")
    assert len(table) == 148  # Tables 1 and 2: 13 rows x 4 datasets each; 3: 5 x 4; B.1 and B.2: 3 x 4 each
    assert table.groupby("table").size().to_dict() == {"1": 52, "2": 52, "3": 20, "B.1": 12, "B.2": 12}

    def number(table_, backbone, dataset, protocol):
        row = table[(table.table == table_) & (table.backbone == backbone) & (table.dataset == dataset)
                    & (table.protocol == protocol)]
        assert len(row) == 1, row
        return row.iloc[0]

    row = number("1", "dinov2_vitb14", "chexpert", "linear")  # "Dinov2 ... 0.722 ± 0.000" (frozen, linear)
    assert (row["mean"], row["std"], row.metric, row.classes) == (0.722, 0.0, "auroc", 14)
    row = number("2", "deit_base", "isic2019", "finetune")  # "ImNet-1k-Sup 0.904 ± 0.006 0.960 ± 0.003 0.823"
    assert (row["mean"], row["std"], row.metric) == (0.823, 0.008, "recall")
    row = number("1", "openclip_vitb16", "aptos", "transformer_head")  # "OpenCLIP 0.903 ± 0.006" (DeiT-B rows)
    assert (row["mean"], row.metric, row.split) == (0.903, "kappa", "70/15/15")
    row = number("3", "dinov2_vitb14@1022", "isic2019", "finetune")  # "Dinov2 0.917 (0.8) 0.983 (1.7) 0.895"
    assert row["mean"] == 0.895 and math.isnan(row["std"]) and row.image_size == 1024
    row = number("B.2", "resnet152_dino_indomain", "chexpert", "finetune")
    assert (row["mean"], row["std"]) == (0.810, 0.0)
    assert set(table.n) == {5}  # "repeated five times"


def _store(folder, auroc: float, weights: str = "hub", runs: int = 5, patients: int = 600, seed: int = 0,
           fractions: str = "[0.8, 0.1, 0.1]") -> ResultsStore:
    """dinov2_vitb14 fine-tuned on cbis_ddsm, `runs` seeds, each run's expected AUROC `auroc` (a run-to-run SD of
    0.003 as Huix's table reports) on one binary test split."""
    rng = np.random.default_rng(seed)
    store = ResultsStore(folder / "results.sqlite")
    y = (rng.random(patients) < 0.4).astype(int)
    ids = [f"case{i:04d}" for i in range(patients)]
    for run in range(runs):
        run_auroc = float(np.clip(rng.normal(auroc, 0.003), 0.51, 0.999))
        separation = math.sqrt(2) * stats.norm.ppf(run_auroc)
        positive = 1 / (1 + np.exp(-(separation * y + rng.normal(size=patients) - separation / 2)))
        scores = np.stack([1 - positive, positive], axis=1)
        config = {"backbone": {"name": "dinov2_vitb14", "weights": weights,
                               "identity": {"family": "timm", "model_id": "vit_base_patch14_dinov2", "weights": weights}},
                  "dataset": {"name": "cbis_ddsm", "class_names": ["benign", "malignant"],
                              "split_origin": f"generated(seed=0, fractions={fractions})"},
                  "preprocess": {"image_size": 224}, "protocol": {"type": "finetune"}, "seed": run, "repeat": 0}
        from sklearn.metrics import roc_auc_score

        store.save(JobRecord(
            key=f"job{run}", study="huix", backbone="dinov2_vitb14", dataset="cbis_ddsm", protocol="finetune",
            protocol_type="finetune", seed=run, repeat=0, task="binary", config=config, selected={}, candidates=[],
            details={}, timings={}, feature_cache=None, val_metrics={},
            test_metrics={"auroc": float(roc_auc_score(y, positive))}, class_names=("benign", "malignant"),
            sample_ids=ids, test_targets=np.eye(2, dtype=np.float32)[y], test_scores=scores, patient_ids=ids))
    return store


def _published(folder, cli, *extra) -> pd.DataFrame:
    result = cli("report", folder, "--resamples", "200", "--patch-images", "0", "--reference", "huix2024", *extra)
    assert result.exit_code == 0, result.stderr[-2000:]
    rows = pd.read_csv(folder / "report" / "tables" / "published.csv", dtype={"table": str})
    assert "Published vs this study" in (folder / "report" / "index.html").read_text()
    return rows


def test_a_store_drawn_to_match_table_2_is_consistent_and_one_far_below_is_not(tmp_path, cli):
    matching = _published(_store(tmp_path / "a", 0.966).path.parent, cli)  # Table 2: Dinov2, DDSM, 0.966 ± 0.003
    row = matching[(matching.table == "2") & (matching.protocol == "finetune") & (matching.dataset == "cbis_ddsm")
                   & (matching.backbone == "dinov2_vitb14")].iloc[0]
    assert row.verdict == "consistent" and row.ci_low <= 0.966 <= row.ci_high, row
    assert row.published_mean == 0.966 and row.runs == 5 and row.interval == "runs × test patients"
    same = matching[(matching.table == "B.2") & (matching.dataset == "cbis_ddsm") &
                    (matching.backbone == "dinov2_vitb14")].iloc[0]
    assert same.verdict == "consistent"  # Table B.2 repeats the number
    not_run = matching[matching.verdict.str.startswith("not run")]
    assert len(not_run) == 148 - 2 and not_run.verdict.str.contains("backbone not in this study").any()
    assert (not_run[not_run.backbone == "dinov2_vitb14"].verdict.str.contains("dataset not in this study|protocol "
                                                                                "not run")).all()

    below = _published(_store(tmp_path / "b", 0.80).path.parent, cli)
    row = below[(below.table == "2") & (below.protocol == "finetune") & (below.dataset == "cbis_ddsm")
                & (below.backbone == "dinov2_vitb14")].iloc[0]
    assert row.verdict == "this study below the paper" and row.ci_high < 0.966, row
    assert row.difference == pytest.approx(row["mean"] - 0.966)


def test_random_weights_and_other_splits_are_not_comparable(tmp_path, cli):
    rows = _published(_store(tmp_path / "r", 0.966, weights="none").path.parent, cli)
    row = rows[(rows.table == "2") & (rows.dataset == "cbis_ddsm") & (rows.backbone == "dinov2_vitb14")].iloc[0]
    assert row.verdict == "not comparable (random weights)"
    rows = _published(_store(tmp_path / "s", 0.966, fractions="[0.7, 0.1, 0.2]").path.parent, cli)
    row = rows[(rows.table == "2") & (rows.dataset == "cbis_ddsm") & (rows.backbone == "dinov2_vitb14")].iloc[0]
    assert row.verdict == "not comparable (split 70/10/20, the paper's 80/10/10)"


def test_a_study_names_its_own_published_numbers_and_the_report_uses_them(tmp_path, pneumonia_npz, cli):
    """`reference:` a CSV beside the study: stored at run time (editing the CSV later changes nothing), compared in
    the report; a shrunk run on random weights says so."""
    (tmp_path / "mine.csv").write_text(
        "source,table,row,backbone,dataset,protocol,metric,mean,std,n\n"
        "Our lab 2026,1,kNN,timm:test_vit,p,knn,auroc,0.75,0.01,3\n"
        "Our lab 2026,1,kNN,timm:test_vit,p,knn,kappa,0.75,0.01,3\n")
    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                     [{"knn": {"k": [3]}}], reference="mine.csv")
    study = write_study(tmp_path, raw)
    run_cli("run", study, "--quiet")
    (tmp_path / "mine.csv").write_text("garbage\n")
    assert cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0").exit_code == 0
    rows = pd.read_csv(tmp_path / "out" / "report" / "tables" / "published.csv")
    assert rows.verdict.tolist() == ["not comparable (random weights; a shrunk run: limit 40)",
                                     "not run (kappa not computed)"]


@pytest.mark.parametrize("text,message", [
    ("source,table\nx,1\n", "missing row, backbone, dataset, protocol, metric, mean, std, n"),
    ("source,table,row,backbone,dataset,protocol,metric,mean,std,n\na,1,r,b,d,p,auroc,high,0.1,3\n",
     "line 2: mean 'high' is not a number"),
])
def test_a_bad_reference_is_one_line_at_plan(tmp_path, pneumonia_npz, cli, text, message):
    (tmp_path / "mine.csv").write_text(text)
    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                     reference="mine.csv")
    result = cli("plan", write_study(tmp_path, raw))
    assert result.exit_code == 2 and message in " ".join(result.stderr.split()), result.stderr
    raw["reference"] = "huix2023"
    result = cli("plan", write_study(tmp_path, raw, "other.yaml"))
    assert result.exit_code == 2 and "did you mean 'huix2024'" in result.stderr


def test_costs_relative_to_a_baseline_backbone(tmp_path, cli):
    """Huix Fig. 3: each cost as a multiple of a baseline backbone's on the same dataset x protocol."""
    from radbench.report.costs import relative_costs

    costs = pd.DataFrame({"backbone": ["deit_base", "dinov2_vitb14", "deit_base", "dinov2_vitb14"],
                          "dataset": ["a", "a", "a", "a"], "protocol": ["finetune", "finetune", "knn", "knn"],
                          "trainable_params": [86e6, 43e6, 0.0, 0.0], "train_seconds": [100.0, 250.0, 1.0, 3.0]})
    out = relative_costs(costs, "deit_base")
    assert out["trainable_params x deit_base"].tolist()[:2] == [1.0, 0.5]
    assert np.isnan(out["trainable_params x deit_base"].iloc[3])  # the baseline's cost is 0: no multiple
    assert out["train_seconds x deit_base"].tolist() == [1.0, 2.5, 1.0, 3.0]
    warned = []
    assert relative_costs(costs, "nope", warned.append).equals(costs) and "has no stored job" in warned[0]
    folder = _store(tmp_path / "c", 0.9).path.parent
    result = cli("report", folder, "--resamples", "100", "--patch-images", "0", "--cost-baseline", "dinov2_vitb14")
    assert result.exit_code == 0, result.stderr[-2000:]

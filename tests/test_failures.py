"""Where each model fails (issue 37): the cases each backbone gets most confidently wrong, and how the backbones'
errors overlap — checked against a computation from `results --predictions` that shares no code with
report/failures.py, and McNemar against statsmodels."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_study, write_study


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory, pneumonia_npz):
    import radbench

    folder = tmp_path_factory.mktemp("failures")
    study = tiny_study(folder, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 120}],
                       [{"knn": {"k": [5]}}, {"linear": {"epochs": 2, "lr": [0.01]}}], seeds=[0, 1],
                       backbones=[{"name": "timm:test_vit", "weights": "none"},
                                  {"name": "timm:test_vit2", "weights": "none"}])
    path = write_study(folder, study)
    radbench.run(path)
    return folder / "out", path


def _independent(out, cli, protocol: str) -> pd.DataFrame:
    """Per backbone x case: wrong or not, from the CSV a user gets, by plain pandas."""
    result = cli("results", out, "--predictions")
    assert result.exit_code == 0, result.stderr
    rows = pd.read_csv(StringIO(result.stdout))
    rows = rows[(rows.dataset == "p") & (rows.protocol == protocol)]
    mean = rows.groupby(["backbone", "sample_id"])[["score_normal", "score_pneumonia"]].mean()
    truth = rows.groupby(["backbone", "sample_id"])["target_pneumonia"].first()
    said = (mean.score_pneumonia > mean.score_normal).astype(int)
    p_truth = np.where(truth == 1, mean.score_pneumonia, mean.score_normal)
    return pd.DataFrame({"wrong": said != truth, "p_truth": p_truth}, index=mean.index)


@pytest.mark.parametrize("protocol", ["knn", "linear"])
def test_agreement_counts_kappa_and_mcnemar_equal_an_independent_computation(two_backbones, cli, protocol):
    from statsmodels.stats.contingency_tables import mcnemar

    import radbench

    out, _ = two_backbones
    pairs, summary = radbench.load(out).error_agreement("p", protocol)
    wrong = _independent(out, cli, protocol).wrong.unstack(0)
    a, b = pairs.backbone_a.iloc[0], pairs.backbone_b.iloc[0]
    assert wrong[a].sum() <= wrong[b].sum()  # A: the backbone with fewer errors
    table = pd.crosstab(wrong[a], wrong[b]).reindex(index=[False, True], columns=[False, True], fill_value=0)
    row = pairs.iloc[0]
    assert (row.neither_wrong, row.only_b_wrong, row.only_a_wrong, row.both_wrong) == tuple(table.to_numpy().ravel())
    observed = np.trace(table.to_numpy()) / table.to_numpy().sum()  # Cohen's kappa by its definition
    n = table.to_numpy().sum()
    expected = (table.sum(axis=1).to_numpy() * table.sum(axis=0).to_numpy()).sum() / n ** 2
    assert row.kappa == pytest.approx((observed - expected) / (1 - expected), abs=1e-12)
    assert row.mcnemar_p == pytest.approx(mcnemar(table.to_numpy(), exact=True).pvalue, rel=1e-9)
    assert summary["all_wrong"] == int((wrong[a] & wrong[b]).sum()) and summary["cases"] == len(wrong)


def test_most_confident_errors_are_the_wrong_cases_with_the_lowest_truth_probability(two_backbones, cli):
    import radbench

    out, _ = two_backbones
    shown = radbench.load(out).failures("p", "knn", top=4)
    independent = _independent(out, cli, "knn")
    for backbone, rows in shown.groupby("backbone"):
        mine = independent.loc[backbone].reset_index()
        expected = mine[mine.wrong].sort_values(["p_truth", "sample_id"]).head(4)  # ties: by case id
        assert list(rows.sample_id) == list(expected.sample_id)
        np.testing.assert_allclose(rows.p_truth, expected.p_truth, rtol=1e-9)
        assert (rows.truth != rows.predicted).all() and (rows.runs == 2).all()


def test_the_page_shows_where_each_model_fails(two_backbones, cli):
    out, _ = two_backbones
    result = cli("report", out)
    assert result.exit_code == 0, result.stderr
    page = (out / "report" / "index.html").read_text()
    assert "Where each model fails" in page and "McNemar p (test cases only)" in page
    assert "cases are wrong for every backbone" in page
    assert (out / "report" / "tables" / "failures-p.csv").is_file()
    assert (out / "report" / "tables" / "error-agreement-p.csv").is_file()


def test_a_multilabel_dataset_is_one_line(tmp_path):
    from radbench.errors import RadbenchError
    from radbench.report.failures import case_outcomes

    rows = pd.DataFrame({"backbone": "a", "dataset": "nih", "protocol": "knn", "seed": 0, "repeat": 0,
                         "sample_id": ["x", "y"], "patient_id": ["x", "y"], "target_a": [1.0, 1.0],
                         "target_b": [1.0, np.nan], "score_a": [0.2, 0.3], "score_b": [0.1, 0.4]})
    with pytest.raises(RadbenchError, match="multi-label: where-it-fails covers single-label tasks"):
        case_outcomes(rows, "nih", "knn")

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
    figures = out / "report" / "figures"
    assert (figures / "failures-p.png").is_file() and (figures / "neighbours-p.png").is_file()  # MedMNIST arrays
    assert "wrong cases with the lowest probability of the true class" in page and "what a kNN reads" in page


def test_nearest_training_images_equal_sklearn_on_the_cached_features(two_backbones, cli):
    """The neighbours shown for a case equal scikit-learn's brute-force cosine NearestNeighbors over the cached
    train + val features, read straight from the cache files."""
    import json

    from sklearn.neighbors import NearestNeighbors

    from radbench.backbones.layout import BundleLayout
    from radbench.report.failure_images import loaded_dataset

    out, _ = two_backbones
    if not (out / "report" / "tables" / "neighbours-p.csv").is_file():
        assert cli("report", out).exit_code == 0
    shown = pd.read_csv(out / "report" / "tables" / "neighbours-p.csv", dtype={"case": str, "sample_id": str})
    assert set(shown.backbone) == {"timm:test_vit", "timm:test_vit2"} and len(shown) >= 8
    import radbench

    data = loaded_dataset(radbench.load(out).jobs.config.iloc[0])  # the API gives configs parsed
    bank_ids = [str(s) for name in ("train", "val") for s in data.splits[name].sample_ids]
    test_ids = [str(s) for s in data.splits["test"].sample_ids]
    jobs = radbench.load(out).jobs
    for backbone, rows_of_backbone in shown.groupby("backbone"):
        protocol = pd.read_csv(out / "report" / "tables" / "failures-p.csv").protocol.iloc[0]  # the section's
        job = jobs[(jobs.backbone == backbone) & (jobs.protocol == protocol)].iloc[0]
        folder = out / "features" / job.feature_cache
        layout = BundleLayout(**json.loads((folder / "manifest.json").read_text())["layout"])
        columns = layout.columns(job.selected["feature"])
        bank = np.concatenate([np.load(folder / f"{name}.npy")[:, columns] for name in ("train", "val")])
        queries = np.load(folder / "test.npy")[:, columns]
        search = NearestNeighbors(n_neighbors=4, metric="cosine", algorithm="brute").fit(bank.astype(np.float64))
        for case, rows in rows_of_backbone.groupby("case"):
            distances, indices = search.kneighbors(queries[[test_ids.index(case)]].astype(np.float64))
            assert list(rows.sort_values("rank").sample_id) == [bank_ids[i] for i in indices[0]]
            np.testing.assert_allclose(rows.sort_values("rank").similarity, 1 - distances[0], atol=1e-6)


def test_a_multilabel_dataset_is_one_line(tmp_path):
    from radbench.errors import RadbenchError
    from radbench.report.failures import case_outcomes

    rows = pd.DataFrame({"backbone": "a", "dataset": "nih", "protocol": "knn", "seed": 0, "repeat": 0,
                         "sample_id": ["x", "y"], "patient_id": ["x", "y"], "target_a": [1.0, 1.0],
                         "target_b": [1.0, np.nan], "score_a": [0.2, 0.3], "score_b": [0.1, 0.4]})
    with pytest.raises(RadbenchError, match="multi-label: where-it-fails covers single-label tasks"):
        case_outcomes(rows, "nih", "knn")


def test_the_api_gives_the_same_neighbours_as_the_page(two_backbones, cli):
    import radbench

    out, _ = two_backbones
    if not (out / "report" / "tables" / "neighbours-p.csv").is_file():
        assert cli("report", out).exit_code == 0
    shown = pd.read_csv(out / "report" / "tables" / "neighbours-p.csv", dtype={"case": str, "sample_id": str})
    protocol = pd.read_csv(out / "report" / "tables" / "failures-p.csv").protocol.iloc[0]
    again = radbench.load(out).neighbours("p", sorted(set(shown.case)), k=4, protocol=protocol)
    merged = shown.drop(columns="dataset").sort_values(["backbone", "case", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(again.sort_values(["backbone", "case", "rank"]).reset_index(drop=True), merged,
                                  check_dtype=False)


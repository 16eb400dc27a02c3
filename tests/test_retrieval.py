"""Retrieval (issue 37): precision@k and AP per test query equal a brute-force computation with scikit-learn's
NearestNeighbors (cosine) and average_precision_score on the train + val bank; the study stores them per query
with their patients, and the leaderboard's intervals resample patients."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from radbench.data.base import Task
from radbench.protocols import PROTOCOLS
from radbench.protocols.retrieval import RetrievalConfig
from tests.conftest import tiny_study, write_study
from tests.test_protocols import make_inputs


def _with_test_split(inputs, patients_per_query: int = 1):
    count = len(inputs.targets["test"])
    split = SimpleNamespace(sample_ids=np.array([f"t{i}" for i in range(count)]),
                            patient_ids=np.array([f"p{i // patients_per_query}" for i in range(count)]))
    inputs.dataset = SimpleNamespace(splits={"test": split})
    return inputs


def _relevant(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Written out without the protocol's helper: shares a positive finding, or neither has any."""
    q = np.nan_to_num(query) == 1
    b = np.nan_to_num(bank) == 1
    shared = (b & q).any(1)
    return shared | (~q.any() & ~b.any(1))


def _brute_force(bank, bank_targets, queries, query_targets, ks):
    from sklearn.metrics import average_precision_score
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=len(bank), metric="cosine", algorithm="brute").fit(bank)
    _, order = search.kneighbors(queries)
    rows = []
    for i, ranked in enumerate(order):
        relevant = _relevant(query_targets[i], bank_targets)
        row = {f"precision_at_{k}": relevant[ranked[:k]].mean() for k in ks}
        sims = 1 - np.array([np.dot(queries[i], b) / np.linalg.norm(queries[i]) / np.linalg.norm(b) for b in bank])
        row["map"] = average_precision_score(relevant, -sims) if relevant.any() else np.nan
        rows.append(row)
    return rows


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_precision_at_k_and_ap_equal_brute_force_on_the_train_plus_val_bank(task):
    inputs = _with_test_split(make_inputs(task, missing=0.2 if task is Task.MULTILABEL else 0.0))
    result = PROTOCOLS.get("retrieval").run(RetrievalConfig(k=[1, 5, 10]), inputs)
    feature = result.selected["feature"]
    bank = np.concatenate([inputs.features.get(feature, s) for s in ("train", "val")])
    bank_targets = np.concatenate([inputs.targets[s] for s in ("train", "val")])
    expected = _brute_force(bank, bank_targets, inputs.features.get(feature, "test"), inputs.targets["test"],
                            [1, 5, 10])
    for ours, theirs in zip(result.sample_metrics, expected):
        for name, value in theirs.items():
            assert ours[name] == pytest.approx(value, abs=1e-9, nan_ok=True), name
    for name in ("precision_at_1", "precision_at_5", "map"):
        values = np.array([row[name] for row in expected], dtype=float)
        assert result.test_metrics[name] == pytest.approx(np.nanmean(values), abs=1e-12)
    assert result.candidates[int(np.argmax([c["val"] for c in result.candidates]))]["params"] == result.selected
    assert [c["sample_id"] for c in result.sample_metrics] == list(inputs.dataset.splits["test"].sample_ids)


def test_features_with_signal_retrieve_better_than_chance_and_a_large_k_uses_the_whole_bank():
    inputs = _with_test_split(make_inputs(Task.MULTICLASS, num_classes=3))
    result = PROTOCOLS.get("retrieval").run(RetrievalConfig(k=[1, 1000]), inputs)
    chance = 1 / 3
    assert result.test_metrics["precision_at_1"] > chance + 0.1
    bank_targets = np.concatenate([inputs.targets[s] for s in ("train", "val")]).argmax(1)
    test = inputs.targets["test"].argmax(1)
    whole_bank = np.mean([(bank_targets == label).mean() for label in test])  # every bank image retrieved
    assert result.test_metrics["precision_at_1000"] == pytest.approx(whole_bank, abs=1e-12)
    assert "k_clamped" in result.details


@pytest.fixture(scope="module")
def retrieval_study(tmp_path_factory, pneumonia_npz):
    import radbench

    folder = tmp_path_factory.mktemp("retrieval")
    study = tiny_study(folder, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 120}],
                       [{"retrieval": {"k": [1, 5]}}], seeds=[0, 1],
                       backbones=[{"name": "timm:test_vit", "weights": "none"},
                                  {"name": "timm:test_vit2", "weights": "none"}])
    radbench.run(write_study(folder, study))
    return folder / "out"


def test_a_study_stores_retrieval_per_query_and_ranks_it_with_patient_intervals(retrieval_study, cli):
    import radbench

    results = radbench.load(retrieval_study)
    jobs = results.jobs
    assert set(jobs.task) == {"retrieval"} and len(jobs) == 4  # 2 backbones x 2 seeds (computed once per unit)
    samples = results.samples
    assert set(samples.metric) == {"precision_at_1", "precision_at_5", "map"}
    assert samples.patient_id.notna().all()
    board = results.leaderboard(resamples=200)
    rows = board[board.metric == "map"]
    assert len(rows) == 2 and (rows.ci_low < rows["mean"]).all() and (rows["mean"] < rows.ci_high).all()
    for row in rows.itertuples():  # the mean of the stored per-query AP of one seed
        stored = samples[(samples.backbone == row.backbone) & (samples.metric == "map") & (samples.seed == 0)]
        assert row.mean == pytest.approx(stored.value.mean(), abs=1e-12)
        assert row.interval == "test patients (runs identical)"
    assert cli("verify", retrieval_study).exit_code == 0
    report = cli("report", retrieval_study)
    assert report.exit_code == 0, report.stderr
    page = (retrieval_study / "report" / "index.html").read_text()
    assert "retrieval" in page and "map" in page


def test_the_interval_resamples_patients_not_queries(tmp_path):
    """Five queries per patient, equal within a patient: 20 independent values, not 100. An interval that treated
    queries as independent would be about sqrt(5) times too narrow."""
    from radbench.report.leaderboard import leaderboard
    from radbench.results import JobRecord, ResultsStore

    rng = np.random.default_rng(0)
    per_patient = rng.random(20)
    widths = {}
    for grouped in (True, False):
        store = ResultsStore(tmp_path / f"{grouped}" / "results.sqlite")
        cases = [{"sample_id": f"q{i}", "map": float(per_patient[i // 5])} for i in range(100)]
        store.save(JobRecord(
            key="r", study="s", backbone="b", dataset="d", protocol="retrieval", protocol_type="retrieval", seed=0,
            repeat=0, task="retrieval", config={"protocol": {"type": "retrieval"}}, selected={}, candidates=[],
            details={}, timings={}, feature_cache=None, val_metrics={}, class_names=("a", "b"),
            test_metrics={"map": float(per_patient.mean())}, sample_ids=[c["sample_id"] for c in cases],
            test_targets=None, test_scores=None, sample_metrics=cases,
            patient_ids=[f"p{i // 5}" for i in range(100)] if grouped else None))
        row = leaderboard(store, resamples=2000).set_index("metric").loc["map"]
        widths[grouped] = row.ci_high - row.ci_low
        assert row["mean"] == pytest.approx(per_patient.mean())
        assert row.test_size == (20 if grouped else 100)
    assert widths[True] / widths[False] > 1.8

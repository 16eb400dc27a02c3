"""The leaderboard's per-job statistics are cached in the store: a second report computes nothing again, a new job
only its own, and every number equals a computation without the cache (exactly: the same arrays)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from radbench.results import JobRecord, ResultsStore

FINDINGS = ("A", "B", "C")


def _save(store: ResultsStore, backbone: str, seed: int, rng, targets, patients) -> None:
    skill = 1.0 + 0.3 * int(backbone[-1])
    scores = 1 / (1 + np.exp(-(skill * (2 * targets - 1) + rng.normal(size=targets.shape))))
    store.save(JobRecord(
        key=f"{backbone}-{seed}", study="cache", backbone=backbone, dataset="nih", protocol="linear",
        protocol_type="linear", seed=seed, repeat=0, task="multilabel", config={"seed": seed},
        selected={}, candidates=[], details={}, timings={}, feature_cache=None, val_metrics={},
        test_metrics={"auroc": 0.5}, class_names=FINDINGS, sample_ids=[f"s{i}" for i in range(len(targets))],
        patient_ids=patients, test_targets=targets, test_scores=scores.astype(np.float64)))


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 3)) < 0.3).astype(np.float32)
    patients = [f"p{i // 3}" for i in range(300)]
    store = ResultsStore(tmp_path / "results.sqlite")
    for backbone in ("b0", "b1", "b2"):
        for seed in range(3):
            _save(store, backbone, seed, rng, targets, patients)
    return store, rng, targets, patients


def _calls(monkeypatch) -> list:
    import radbench.report.leaderboard as module

    calls = []
    real = module.metrics_under_weights

    def counted(task, targets, scores, weights):
        calls.append(len(weights))
        return real(task, targets, scores, weights)

    monkeypatch.setattr(module, "metrics_under_weights", counted)
    return calls


def test_cached_statistics_are_reused_and_exact(store, monkeypatch):
    from radbench.report.leaderboard import leaderboard

    store, rng, targets, patients = store
    calls = _calls(monkeypatch)
    first = leaderboard(store, resamples=200)
    assert len(calls) == 2 * 9  # whole split + resamples, per job
    calls.clear()
    second = leaderboard(store, resamples=200)
    assert calls == []  # every job's statistics came from the store
    pd.testing.assert_frame_equal(first, second)
    _save(store, "b3", 0, rng, targets, patients)
    third = leaderboard(store, resamples=200)
    assert len(calls) == 2  # the new job only
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM stat_cache")
    calls.clear()
    fresh = leaderboard(store, resamples=200)
    assert len(calls) == 2 * 10
    pd.testing.assert_frame_equal(third, fresh)
    other = leaderboard(store, resamples=300)  # another resample count: its own entries
    assert len(calls) == 2 * 10 * 2
    assert not other.equals(fresh)


def test_cached_clinical_statistics_are_reused_and_exact(store, monkeypatch):
    """The operating points and calibration (200 resamples each) are cached the same way: a second report computes
    none, a new job only its own, and the rows equal those computed with the cache emptied."""
    import radbench.report.clinical as module

    store, rng, targets, patients = store
    calls = []
    real = module.clinical_under_weights

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "clinical_under_weights", counted)
    first = module.clinical_rows(store, store.jobs())
    assert len(calls) == 2 * 9 and not first.empty
    calls.clear()
    pd.testing.assert_frame_equal(first, module.clinical_rows(store, store.jobs()))
    assert calls == []
    _save(store, "b3", 0, rng, targets, patients)
    third = module.clinical_rows(store, store.jobs())
    assert len(calls) == 2
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM stat_cache")
    pd.testing.assert_frame_equal(third, module.clinical_rows(store, store.jobs()))
    assert len(calls) == 2 + 2 * 10

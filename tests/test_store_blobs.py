"""Predictions in the store: float32 scores, compressed targets and ids (results/prediction_blobs.py). Metrics
recomputed from what was stored stay within 1e-6 of scikit-learn on the float64 scores the protocol produced; a
store written before (float64, raw, JSON text) reads as it did; a damaged row is named, not misread."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from radbench.results import JobRecord, ResultsStore
from radbench.results.store_file import StoreError


def record(key, targets, scores, task="multilabel", ids=None, patients=None):
    ids = ids or [f"img{i:06d}" for i in range(len(targets))]
    return JobRecord(key=key, study="s", backbone="b", dataset="d", protocol="logreg", protocol_type="logreg",
                     seed=0, repeat=0, task=task, config={}, selected={}, candidates=[], details={}, timings={},
                     feature_cache=None, val_metrics={}, test_metrics={}, class_names=tuple(map(str, range(
                         targets.shape[1]))), sample_ids=ids, test_targets=targets, test_scores=scores,
                     extra_metrics={}, patient_ids=patients or [f"pat{i // 9:05d}" for i in range(len(targets))])


def nih_like(n=25_596, classes=14, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, classes)) < 0.06).astype(np.float32)
    targets[rng.random(targets.shape) < 0.02] = np.nan  # unknown labels (CheXpert's blanks)
    logits = 1.5 * np.nan_to_num(targets) + rng.normal(size=targets.shape)
    return targets, 1 / (1 + np.exp(-logits))


def test_metrics_from_stored_predictions_stay_within_1e6_of_the_float64_ones(tmp_path):
    targets, scores = nih_like()
    store = ResultsStore(tmp_path / "results.sqlite")
    store.save(record("nih", targets, scores))
    _, ids, stored_targets, stored_scores = store.predictions("nih")
    assert ids[:2] == ["img000000", "img000001"] and store.patient_ids("nih")[9] == "pat00001"
    np.testing.assert_array_equal(stored_targets, targets)  # NaN where NaN
    np.testing.assert_array_equal(stored_scores, scores.astype(np.float32))
    for c in range(targets.shape[1]):
        known = ~np.isnan(targets[:, c])
        exact = roc_auc_score(targets[known, c], scores[known, c])
        assert abs(roc_auc_score(stored_targets[known, c], stored_scores[known, c]) - exact) <= 1e-6

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 5000)
    logits = rng.normal(size=(5000, 4)) + 1.2 * np.eye(4)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    store.save(record("multiclass", np.eye(4, dtype=np.float32)[labels], probabilities, task="multiclass"))
    _, _, _, stored = store.predictions("multiclass")
    for metric in (lambda p: roc_auc_score(labels, p, multi_class="ovr"),
                   lambda p: accuracy_score(labels, p.argmax(1)), lambda p: balanced_accuracy_score(labels, p.argmax(1)),
                   lambda p: f1_score(labels, p.argmax(1), average="macro")):
        assert abs(metric(stored / stored.sum(1, keepdims=True)) - metric(probabilities)) <= 1e-6


def test_a_stored_nih_sized_job_takes_under_a_third_of_what_it_did(tmp_path):
    targets, scores = nih_like()
    store = ResultsStore(tmp_path / "results.sqlite")
    store.save(record("nih", targets, scores))
    with sqlite3.connect(store.path) as conn:
        stored = conn.execute("SELECT length(targets) + length(scores) + length(sample_ids) + length(patient_ids) "
                              "FROM predictions").fetchone()[0]
    before = targets.size * (4 + 8) + len(json.dumps(store.predictions("nih")[1])) + len(
        json.dumps(store.patient_ids("nih")))  # raw float32 targets, float64 scores, JSON id text
    assert stored < before / 3, (stored, before)


def test_a_store_written_before_reads_as_it_did(tmp_path):
    """float64 scores, raw float32 targets and JSON text ids, as radbench wrote them before this version."""
    store = ResultsStore(tmp_path / "results.sqlite")
    targets = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    scores = np.array([[0.9, 0.1], [0.3, 0.7], [0.123456789012345, 0.876543210987655], [0.6, 0.4]])
    store.save(record("old", targets, scores, task="binary", ids=["a", "b", "c", "d"], patients=["p", "p", "q", "r"]))
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE predictions SET targets = ?, scores = ?, sample_ids = ?, patient_ids = ?, "
                     "checksums = NULL",  # stores from before checksums: the column added empty
                     (targets.tobytes(), scores.tobytes(), json.dumps(["a", "b", "c", "d"]),
                      json.dumps(["p", "p", "q", "r"])))
    assert store.unusable_predictions() == {}
    _, ids, read_targets, read_scores = store.predictions("old")
    assert ids == ["a", "b", "c", "d"] and store.patient_ids("old") == ["p", "p", "q", "r"]
    np.testing.assert_array_equal(read_targets, targets)
    np.testing.assert_array_equal(read_scores, scores)  # float64 as written: not rounded


@pytest.mark.parametrize("column,value,why", [
    ("scores", "substr(scores, 1, 10)", "10 score bytes"),
    ("targets", "zeroblob(7)", "7 target bytes"),
])
def test_a_torn_row_is_named_by_its_checksum_or_its_size(tmp_path, column, value, why):
    """This version's rows name the blob whose checksum differs; rows of older stores (no checksums) are named by
    the sizes their shape implies."""
    targets, scores = nih_like(50, 3)
    for name, older in (("new", False), ("old", True)):
        store = ResultsStore(tmp_path / name / "results.sqlite")
        store.save(record("torn", targets, scores))
        with sqlite3.connect(store.path) as conn:
            conn.execute(f"UPDATE predictions SET {column} = {value}" + (", checksums = NULL" if older else ""))
        said = ResultsStore(store.path).unusable_predictions()["torn"]
        assert (why if older else f"{column} changed since written (checksum differs)") in said, said


def test_compressed_targets_that_do_not_inflate_stop_with_the_job_named(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    targets, scores = nih_like(50, 3)
    store.save(record("torn", targets, scores))
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE predictions SET targets = substr(targets, 1, 20)")
    with pytest.raises(StoreError, match="job torn: predictions damaged"):
        store.predictions("torn")

"""Metrics equal scikit-learn computed independently on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from radbench.data.base import Task, labels_to_targets
from radbench.metrics import classification_metrics


def random_scores(rng, n, c):
    scores = rng.random((n, c))
    return scores / scores.sum(1, keepdims=True)


def test_binary_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = random_scores(rng, 200, 2)
    metrics, _ = classification_metrics(Task.BINARY, labels_to_targets(Task.BINARY, y, 2), scores, ("a", "b"))
    assert metrics["auroc"] == roc_auc_score(y, scores[:, 1])
    assert metrics["accuracy"] == accuracy_score(y, scores.argmax(1))
    assert metrics["balanced_accuracy"] == balanced_accuracy_score(y, scores.argmax(1))
    assert metrics["f1_macro"] == f1_score(y, scores.argmax(1), average="macro")


def test_multiclass_auroc_is_one_vs_rest_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    scores = random_scores(rng, 300, 4)
    metrics, _ = classification_metrics(Task.MULTICLASS, labels_to_targets(Task.MULTICLASS, y, 4), scores, tuple("abcd"))
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"), abs=1e-12)


def test_ordinal_kappa_is_quadratic_weighted():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, 250)
    scores = random_scores(rng, 250, 5)
    metrics, _ = classification_metrics(Task.ORDINAL, labels_to_targets(Task.ORDINAL, y, 5), scores, tuple("01234"))
    assert metrics["kappa"] == cohen_kappa_score(y, scores.argmax(1), weights="quadratic")


def test_multilabel_auroc_per_class_with_missing_labels_then_macro():
    rng = np.random.default_rng(3)
    targets = (rng.random((120, 4)) < 0.3).astype(np.float32)
    targets[rng.random(targets.shape) < 0.2] = np.nan  # missing labels
    targets[:, 3] = np.where(np.isnan(targets[:, 3]), np.nan, 0.0)  # class 3: only negatives known
    scores = rng.random((120, 4))
    metrics, notes = classification_metrics(Task.MULTILABEL, targets, scores, ("a", "b", "c", "d"))
    per_class = []
    for c, name in enumerate("abc"):
        known = ~np.isnan(targets[:, c])
        value = roc_auc_score(targets[known, c], scores[known, c])
        assert metrics[f"auroc/{name}"] == value
        per_class.append(value)
    assert metrics["auroc"] == pytest.approx(np.mean(per_class), abs=1e-15)
    assert notes["auroc_skipped_classes"] == ["d"] and "auroc/d" not in metrics
    assert metrics["auroc_classes"] == 3


def test_undefined_auroc_is_nan_not_half():
    y = np.zeros(10, dtype=int)
    metrics, notes = classification_metrics(Task.BINARY, labels_to_targets(Task.BINARY, y, 2),
                                            random_scores(np.random.default_rng(4), 10, 2), ("a", "b"))
    assert np.isnan(metrics["auroc"]) and notes

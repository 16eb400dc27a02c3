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


# independent references: computed here from counts, sharing no code (and no library call) with radbench


def brute_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half: every pair, one by one."""
    positives, negatives = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def brute_f1(y: np.ndarray, p: np.ndarray, c: int) -> float:
    tp = np.sum((y == c) & (p == c))
    fp = np.sum((y != c) & (p == c))
    fn = np.sum((y == c) & (p != c))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def brute_quadratic_kappa(y: np.ndarray, p: np.ndarray, k: int) -> float:
    observed = np.zeros((k, k))
    for a, b in zip(y, p):
        observed[a, b] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(y)
    weights = np.array([[(i - j) ** 2 for j in range(k)] for i in range(k)]) / (k - 1) ** 2
    return 1 - (weights * observed).sum() / (weights * expected).sum()


def test_against_brute_force_counts():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    scores = random_scores(rng, 80, 2).round(2)  # rounded: ties between scores must count half
    metrics, _ = classification_metrics(Task.BINARY, labels_to_targets(Task.BINARY, y, 2), scores, ("a", "b"))
    assert metrics["auroc"] == pytest.approx(brute_auroc(y, scores[:, 1]), abs=1e-12)
    predicted = scores.argmax(1)
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert metrics["f1_macro"] == pytest.approx((brute_f1(y, predicted, 0) + brute_f1(y, predicted, 1)) / 2)

    y5 = rng.integers(0, 5, 150)
    scores5 = random_scores(rng, 150, 5)
    metrics, _ = classification_metrics(Task.ORDINAL, labels_to_targets(Task.ORDINAL, y5, 5), scores5, tuple("01234"))
    assert metrics["kappa"] == pytest.approx(brute_quadratic_kappa(y5, scores5.argmax(1), 5), abs=1e-12)
    recalls = [np.mean(scores5.argmax(1)[y5 == c] == c) for c in range(5)]
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert metrics["recall"] == pytest.approx(np.mean(recalls))  # ISIC's "Rec." in Huix et al.: macro recall
    absent = y5 != 4  # a class missing from the split is not averaged in (its recall is undefined, not 0)
    metrics, _ = classification_metrics(Task.ORDINAL, labels_to_targets(Task.ORDINAL, y5[absent], 5),
                                        scores5[absent], tuple("01234"))
    assert metrics["recall"] == pytest.approx(np.mean(recalls[:4]))


def test_macro_f1_skips_and_names_a_class_absent_from_the_split_as_auroc_does():
    y = np.array([0, 0, 1, 1, 0, 1])  # class "c" never occurs in this split
    scores = np.array([[.8, .1, .1], [.2, .1, .7], [.1, .8, .1], [.3, .6, .1], [.9, 0, .1], [.2, .7, .1]])
    metrics, notes = classification_metrics(Task.MULTICLASS, labels_to_targets(Task.MULTICLASS, y, 3), scores,
                                            ("a", "b", "c"))
    predicted = scores.argmax(1)
    assert metrics["f1_macro"] == pytest.approx((brute_f1(y, predicted, 0) + brute_f1(y, predicted, 1)) / 2)
    assert notes["f1_skipped_classes"] == ["c"] and notes["auroc_skipped_classes"] == ["c"]
    aurocs = [brute_auroc((y == c).astype(int), scores[:, c]) for c in (0, 1)]
    assert metrics["auroc"] == pytest.approx(np.mean(aurocs))


def test_multilabel_against_brute_force_with_missing_labels():
    rng = np.random.default_rng(6)
    targets = (rng.random((60, 3)) < 0.4).astype(np.float32)
    targets[rng.random(targets.shape) < 0.25] = np.nan
    scores = rng.random((60, 3))
    metrics, _ = classification_metrics(Task.MULTILABEL, targets, scores, ("a", "b", "c"))
    aurocs, accuracies, prevalences = [], [], []
    for c in range(3):
        known = ~np.isnan(targets[:, c])
        y, s = targets[known, c].astype(int), scores[known, c]
        aurocs.append(brute_auroc(y, s))
        accuracies.append(np.mean((s >= 0.5) == y))
        prevalences.append(y.sum() / len(y))
    assert metrics["auroc"] == pytest.approx(np.mean(aurocs), abs=1e-12)
    assert metrics["label_accuracy"] == pytest.approx(np.mean(accuracies))  # per-label accuracy at 0.5, then mean
    assert metrics["label_prevalence"] == pytest.approx(np.mean(prevalences))
    assert "accuracy" not in metrics  # not a headline accuracy: named for what it is, prevalence beside it


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL])
def test_one_selection_metric_alone_equals_the_full_computation(task):
    """Choosing among a grid computes only the selection metric (`only=`): the same value as the full set, for every
    metric a task can select by, on full splits and on one where a class is absent."""
    from radbench.metrics import selectable_metrics

    rng = np.random.default_rng(3)
    classes = 2 if task is Task.BINARY else 4
    names = tuple(f"c{i}" for i in range(classes))
    for absent in (False, True):
        if task is Task.MULTILABEL:
            targets = (rng.random((60, classes)) < 0.3).astype(np.float32)
            targets[rng.random((60, classes)) < 0.2] = np.nan
            if absent:
                targets[:, 1] = 0.0
            scores = rng.random((60, classes))
        else:
            labels = rng.integers(0, classes - absent, 60)
            targets = np.eye(classes, dtype=np.float32)[labels]
            scores = rng.dirichlet(np.ones(classes), 60)
        full, _ = classification_metrics(task, targets, scores, names)
        for metric in selectable_metrics(task):
            alone, _ = classification_metrics(task, targets, scores, names, only=metric)
            np.testing.assert_equal(alone[metric], full[metric])

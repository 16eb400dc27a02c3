"""Statistics of stored predictions against computations that share no code with them: the metrics as radbench
stores them, explicit resampling, brute-force pair counts and DeLong's structural components written out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radbench.data.base import Task, labels_to_targets
from radbench.metrics import classification_metrics
from radbench.report.stats import (
    bootstrap,
    delong,
    holm,
    metrics_under_weights,
    paired_bootstrap,
    patient_weights,
    weighted_auroc,
)
from tests.test_metrics import brute_auroc


def single_label(task, n, classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    scores = rng.random((n, classes)) + 0.8 * np.eye(classes)[y]
    return labels_to_targets(task, y, classes), scores / scores.sum(1, keepdims=True)


@pytest.mark.parametrize("task,classes", [(Task.BINARY, 2), (Task.MULTICLASS, 4), (Task.ORDINAL, 5)])
def test_unit_weights_give_the_stored_metrics(task, classes):
    targets, scores = single_label(task, 300, classes, 0)
    targets[:, -1] = 0.0 if task is Task.MULTICLASS else targets[:, -1]  # (a class may be absent)
    targets[targets.sum(1) == 0, 0] = 1.0
    stored, _ = classification_metrics(task, targets, scores, tuple(map(str, range(classes))))
    ours = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))
    for name, values in ours.items():
        assert values[0] == pytest.approx(stored[name], abs=1e-12), name


def test_unit_weights_give_the_stored_multilabel_metrics():
    rng = np.random.default_rng(1)
    targets = (rng.random((200, 3)) < 0.4).astype(np.float32)
    targets[rng.random(targets.shape) < 0.2] = np.nan
    scores = rng.random((200, 3))
    stored, _ = classification_metrics(Task.MULTILABEL, targets, scores, ("a", "b", "c"))
    ours = metrics_under_weights(Task.MULTILABEL, targets, scores, np.ones((1, 200)))
    assert ours["auroc"][0] == pytest.approx(stored["auroc"], abs=1e-12)
    assert ours["label_accuracy"][0] == pytest.approx(stored["label_accuracy"], abs=1e-12)


def test_weighted_auroc_equals_the_auroc_of_the_replicated_samples():
    rng = np.random.default_rng(2)
    y, scores = rng.integers(0, 2, 60), rng.random(60).round(1)  # many ties
    weights = rng.integers(0, 4, (5, 60)).astype(float)
    for row, value in zip(weights, weighted_auroc(y, scores, weights)):
        keep = np.repeat(np.arange(60), row.astype(int))
        assert value == pytest.approx(brute_auroc(y[keep], scores[keep]), abs=1e-12)


def test_a_resample_is_the_metric_of_explicitly_resampled_patients():
    """Weights come per patient: a patient's images are drawn together, and the weighted metric equals the metric
    on the concatenation of the drawn patients' images."""
    targets, scores = single_label(Task.BINARY, 90, 2, 3)
    patients = np.repeat([f"p{i}" for i in range(30)], 3)
    weights = patient_weights(patients, 4, seed=7)
    for row in weights:
        per_patient = row.reshape(30, 3)
        assert (per_patient == per_patient[:, :1]).all() and row.sum() == 90
        keep = np.repeat(np.arange(90), row.astype(int))
        stored, _ = classification_metrics(Task.BINARY, targets[keep], scores[keep], ("a", "b"))
        ours = metrics_under_weights(Task.BINARY, targets, scores, row[None])
        for name in ("auroc", "accuracy", "balanced_accuracy", "f1_macro"):
            assert ours[name][0] == pytest.approx(stored[name], abs=1e-12), name


@pytest.mark.parametrize("task,classes", [(Task.MULTILABEL, 4), (Task.MULTICLASS, 3)])
def test_patient_resamples_give_the_metrics_of_the_explicitly_resampled_images(task, classes):
    """The per-patient path (report/resamples.py: counts per patient, the AUROC loop over blocks of resamples)
    against scikit-learn on the images of the drawn patients, concatenated: unknown labels, tied scores, patients of
    different sizes, and a resample count that leaves a partial block (70 = 64 + 6)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from radbench.report.resamples import patient_resamples

    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 6, 40)
    patients = np.repeat([f"p{i:02d}" for i in range(40)], sizes)
    n = len(patients)
    if task is Task.MULTILABEL:
        targets = (rng.random((n, classes)) < 0.3).astype(np.float32)
        targets[rng.random(targets.shape) < 0.15] = np.nan
    else:
        targets = np.eye(classes)[rng.integers(0, classes, n)]
    scores = (rng.random((n, classes)) + 0.5 * np.nan_to_num(targets)).round(1)  # many ties
    resamples = patient_resamples(patients, 70, seed=11)
    ours = metrics_under_weights(task, targets, scores, resamples)
    dense = metrics_under_weights(task, targets, scores, patient_weights(patients, 70, seed=11))
    for b in range(70):
        keep = np.repeat(np.arange(n), resamples.dense()[b].astype(int))
        t, s = targets[keep], scores[keep]
        if task is Task.MULTILABEL:
            aurocs, accuracies = [], []
            for c in range(classes):
                known = ~np.isnan(t[:, c])
                y = t[known, c].astype(int)
                aurocs.append(roc_auc_score(y, s[known, c]) if 0 < y.sum() < len(y) else np.nan)
                accuracies.append(accuracy_score(y, s[known, c] >= 0.5))
            expected = {"auroc": np.nanmean(aurocs), "label_accuracy": np.mean(accuracies)}
        else:
            true = t.argmax(1)  # one-vs-rest over the classes the resample holds
            expected = {"auroc": np.mean([roc_auc_score(true == c, s[:, c]) for c in np.unique(true)]),
                        "accuracy": accuracy_score(true, s.argmax(1))}
        for name, value in expected.items():
            assert ours[name][b] == pytest.approx(value, abs=1e-12), (name, b)
            assert dense[name][b] == pytest.approx(value, abs=1e-12), (name, b)


def test_bootstrap_intervals_are_seeded_contain_the_estimate_and_shrink_with_size():
    small_targets, small_scores = single_label(Task.BINARY, 200, 2, 4)
    big_targets, big_scores = single_label(Task.BINARY, 2000, 2, 4)
    first = bootstrap(Task.BINARY, small_targets, small_scores, np.arange(200), 1000, seed=0)
    again = bootstrap(Task.BINARY, small_targets, small_scores, np.arange(200), 1000, seed=0)
    other = bootstrap(Task.BINARY, small_targets, small_scores, np.arange(200), 1000, seed=1)
    assert first == again and first["auroc"] != other["auroc"]
    for interval in first.values():
        assert interval.low <= interval.estimate <= interval.high and interval.resamples == 1000
    big = bootstrap(Task.BINARY, big_targets, big_scores, np.arange(2000), 1000, seed=0)
    width = {name: first[name].high - first[name].low for name in first}
    assert all(big[name].high - big[name].low < 0.6 * width[name] for name in first)  # ~ 1 / sqrt(10) expected


def brute_delong(y, a, b):
    """DeLong et al. (1988) written out: psi over every (positive, negative) pair."""
    pos, neg = y == 1, y == 0
    components = []
    for scores in (a, b):
        psi = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
        components.append((psi.mean(), psi.mean(1), psi.mean(0)))
    m, n = pos.sum(), neg.sum()
    s10 = np.cov(np.stack([components[0][1], components[1][1]]))
    s01 = np.cov(np.stack([components[0][2], components[1][2]]))
    s = s10 / m + s01 / n
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    difference = components[0][0] - components[1][0]
    from scipy.stats import norm

    return difference, variance, 2 * norm.sf(abs(difference) / np.sqrt(variance))


def test_delong_equals_its_structural_components_written_out():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 150)
    a = (rng.random(150) + 0.5 * y).round(2)  # ties, within and across classes
    b = (a + rng.normal(scale=0.3, size=150)).round(2)
    ours, reference = delong(y, a, b), brute_delong(y, a, b)
    assert ours[0] == pytest.approx(reference[0], abs=1e-12)
    assert ours[1] == pytest.approx(reference[1], rel=1e-9)
    assert ours[2] == pytest.approx(reference[2], rel=1e-9)
    assert delong(y, b, a)[0] == pytest.approx(-ours[0]) and delong(y, b, a)[2] == pytest.approx(ours[2])
    assert delong(y, a, a)[2] == 1.0



def test_delong_of_seed_averaged_aurocs_uses_seed_averaged_pair_kernels():
    # S seeds per model: the mean AUROC is the mean over pairs of the seed-averaged psi, and so are its components
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 120)
    a = (rng.random((3, 120)) + 0.6 * y).round(2)
    b = (rng.random((4, 120)) + 0.4 * y).round(2)
    pos, neg = y == 1, y == 0

    def kernel(runs):
        return np.mean([(s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
                        for s in runs], axis=0)

    psi_a, psi_b = kernel(a), kernel(b)
    s10 = np.cov(np.stack([psi_a.mean(1), psi_b.mean(1)])) / pos.sum()
    s01 = np.cov(np.stack([psi_a.mean(0), psi_b.mean(0)])) / neg.sum()
    variance = (s10 + s01) @ np.array([1, -1]) @ np.array([1, -1])
    difference, ours_variance, p = delong(y, a, b)
    mean_auroc = np.mean([roc_auc_score(y, s) for s in a]) - np.mean([roc_auc_score(y, s) for s in b])
    assert difference == pytest.approx(mean_auroc, abs=1e-12)
    assert ours_variance == pytest.approx(variance, rel=1e-9)
    assert delong(y, a[:1], b[:1])[1] == pytest.approx(delong(y, a[0], b[0])[1], rel=1e-12)


@pytest.mark.parametrize("a, variance, difference", [
    # two positives, two negatives; structural components worked out by hand (V10 per
    # positive, V01 per negative, S = sample covariances, Var = (S10aa + S10bb - 2 S10ab)/m + (S01 ...)/n)
    ([0.9, 0.4, 0.5, 0.1], 0.125, 0.25),  # psi_a = [[1, 1], [0, 1]]: V10 = [1, .5], V01 = [.5, 1]
    ([0.9, 0.5, 0.5, 0.1], 0.15625, 0.375),  # a tie (P2 = N1) counts one half: V10 = [1, .75], V01 = [.75, 1]
])
def test_delong_on_cases_worked_by_hand(a, variance, difference):
    y = np.array([1, 1, 0, 0])
    b = np.array([0.6, 0.8, 0.85, 0.2])  # psi_b = [[0, 1], [0, 1]]: AUROC 0.5, V10 = [.5, .5], V01 = [0, 1]
    ours = delong(y, np.array(a), b)
    assert ours[0] == pytest.approx(difference, abs=1e-12)
    assert ours[1] == pytest.approx(variance, abs=1e-12)
    assert ours[2] == pytest.approx(math.erfc(difference / math.sqrt(variance) / math.sqrt(2)), abs=1e-12)

def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 -> 4*0.01, max(.., 3*0.03), max(.., 2*0.04), max(.., 0.20)
    assert holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, float("nan")])[0] == 0.5 and np.isnan(holm([0.5, float("nan")])[1])


def test_paired_bootstrap_tells_a_better_model_apart():
    targets, good = single_label(Task.BINARY, 400, 2, 6)
    rng = np.random.default_rng(6)
    noise = rng.random((400, 2))
    noise /= noise.sum(1, keepdims=True)
    patients = np.arange(400)
    assert paired_bootstrap(Task.BINARY, targets, good, good, patients, "auroc") == 1.0
    assert paired_bootstrap(Task.BINARY, targets, good, noise, patients, "auroc") < 0.01
    assert paired_bootstrap(Task.BINARY, targets, good, noise, patients, "accuracy") < 0.01


def test_stored_predictions_keep_patients_for_the_bootstrap(tmp_path, nih_labels):
    """NIH images with their Patient ID: the store keeps each test image's patient, and a bootstrap of the stored
    predictions reproduces the stored metric as its estimate."""
    from radbench.config import parse_study
    from radbench.progress import Reporter
    from radbench.results import ResultsStore
    from radbench.runner import run_study
    from tests.conftest import tiny_study

    dataset = {"name": "nih", "adapter": "csv", "path": str(nih_labels), "image_column": "Image Index",
               "label_columns": ["Effusion", "Infiltration", "Atelectasis"], "patient_column": "Patient ID",
               "split_fractions": [0.5, 0.2, 0.3]}
    run_study(parse_study(tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}]), tmp_path), Reporter(quiet=True))
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    (key,) = store.jobs().key
    _, sample_ids, targets, scores = store.predictions(key)
    patients = store.patient_ids(key)
    table = __import__("pandas").read_csv(nih_labels)
    expected = dict(zip(table["Image Index"].astype(str), table["Patient ID"].astype(str)))
    assert [expected[s.rsplit("/", 1)[-1]] for s in sample_ids] == patients
    assert patients != list(sample_ids)  # the patient column, not the image ids
    intervals = bootstrap(Task.MULTILABEL, targets, scores, np.array(patients), 200, seed=0)
    stored = store.metrics("test").set_index("metric")["value"]
    assert intervals["auroc"].estimate == pytest.approx(stored["auroc"], abs=1e-12)

"""Statistics of stored test predictions: patient-level bootstrap confidence intervals, DeLong's test for paired
AUROCs, paired bootstrap tests for the other metrics, Holm's correction.

The bootstrap resamples *patients* (all of a patient's images together): resample b gives patient p a multiplicity
w[b, p] ~ Multinomial(P, 1/P), and every metric is computed with those multiplicities as sample weights, for all
resamples at once (weighted AUROC from one sort of the scores; the other metrics from weighted confusion matrices;
report/resamples.py keeps the multiplicities per patient).
With all weights 1 each metric equals radbench's stored value (scikit-learn's)."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np

from radbench.data.base import Task
from radbench.report.resamples import Resamples, auroc, patient_resamples


def patient_weights(patient_ids: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, N) sample weights: each patient drawn with replacement, its images carrying its multiplicity."""
    return patient_resamples(patient_ids, resamples, seed).dense()


def as_resamples(weights: np.ndarray | Resamples) -> Resamples:
    """Resamples as given, or (B, N) sample weights read as every sample its own patient."""
    if isinstance(weights, Resamples):
        return weights
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return Resamples(weights, np.arange(weights.shape[1], dtype=np.int64))


def weighted_auroc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | Resamples) -> np.ndarray:
    """AUROC per resample (row of `weights`, (B, N)): P(score of a positive > score of a negative), ties half, with
    sample weights. NaN where a row has no positive or no negative weight."""
    return auroc(y, scores, as_resamples(weights))


def _from_confusions(matrices: np.ndarray, task: Task) -> dict[str, np.ndarray]:
    total = matrices.sum((1, 2))
    diagonal = np.diagonal(matrices, axis1=1, axis2=2)
    support, predicted = matrices.sum(2), matrices.sum(1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, diagonal / support, np.nan)
        f1 = np.where(present, 2 * diagonal / (support + predicted), np.nan)  # classes absent from the split: skipped
        out = {"accuracy": diagonal.sum(1) / total, "balanced_accuracy": np.nanmean(recall, axis=1),
               "f1_macro": np.nanmean(f1, axis=1)}
        if task is Task.ORDINAL:
            k = matrices.shape[1]
            penalty = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2) / (k - 1) ** 2
            expected = support[:, :, None] * predicted[:, None, :] / total[:, None, None]
            out["kappa"] = 1 - (penalty * matrices).sum((1, 2)) / (penalty * expected).sum((1, 2))
    return out


def metrics_under_weights(task: Task, targets: np.ndarray, scores: np.ndarray,
                          weights: np.ndarray | Resamples) -> dict:
    """The headline metrics under every resample (patient resamples, or rows of (B, N) sample weights): arrays of
    length B."""
    resamples = as_resamples(weights)
    if task is Task.MULTILABEL:
        aurocs, accuracies = [], []
        for c in range(targets.shape[1]):
            known = ~np.isnan(targets[:, c])
            y, s, seen = targets[known, c].astype(int), scores[known, c], resamples.subset(known)
            aurocs.append(auroc(y, s, seen))
            sums = seen.per_patient(np.stack([(s >= 0.5) == y, np.ones(len(y))], axis=1).astype(np.float64))
            with np.errstate(invalid="ignore", divide="ignore"):
                accuracies.append(sums[:, 0] / sums[:, 1])
        with np.errstate(invalid="ignore"), _quiet():
            return {"auroc": np.nanmean(np.stack(aurocs), axis=0),
                    "label_accuracy": np.nanmean(np.stack(accuracies), 0)}
    true, predicted = targets.argmax(1), scores.argmax(1)
    classes = targets.shape[1]
    cells = np.zeros((len(true), classes * classes))
    cells[np.arange(len(true)), true * classes + predicted] = 1.0
    out = _from_confusions(resamples.per_patient(cells).reshape(len(resamples), classes, classes), task)
    if classes == 2:
        out["auroc"] = auroc(true, scores[:, 1], resamples)
    else:
        per_class = np.stack([auroc((true == c).astype(int), scores[:, c], resamples) for c in range(classes)])
        with _quiet():
            out["auroc"] = np.nanmean(per_class, axis=0)  # one-vs-rest macro over the classes present
    return out


@contextlib.contextmanager
def _quiet():
    """nanmean of an all-NaN column is NaN by design here: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    resamples: int


def bootstrap(task: Task, targets: np.ndarray, scores: np.ndarray, patient_ids: np.ndarray, resamples: int = 1000,
              seed: int = 0, level: float = 0.95) -> dict[str, Interval]:
    """Percentile intervals over patient-level resamples, for every headline metric; the estimate is the metric
    on the test split as it is."""
    estimate = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))
    draws = metrics_under_weights(task, targets, scores, patient_resamples(patient_ids, resamples, seed))
    tail = (1 - level) / 2
    out = {}
    for name, values in draws.items():
        values = values[~np.isnan(values)]
        low, high = (np.quantile(values, [tail, 1 - tail]) if len(values) else (math.nan, math.nan))
        out[name] = Interval(float(estimate[name][0]), float(low), float(high), int(len(values)))
    return out


def paired_bootstrap(task: Task, targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                     patient_ids: np.ndarray, metric: str, resamples: int = 1000, seed: int = 0) -> float:
    """Two-sided p-value of `metric`(a) - `metric`(b) = 0, the two models scored on the same resamples."""
    weights = patient_resamples(patient_ids, resamples, seed)
    return bootstrap_p_value(metrics_under_weights(task, targets, scores_a, weights)[metric]
                             - metrics_under_weights(task, targets, scores_b, weights)[metric])


def bootstrap_p_value(difference: np.ndarray) -> float:
    """Two-sided p-value of a difference from its paired resamples: twice the share on the smaller side of zero
    (undefined resamples left out; NaN when none is left)."""
    difference = difference[~np.isnan(difference)]
    if not len(difference):
        return math.nan
    return float(min(1.0, 2 * min((difference <= 0).mean(), (difference >= 0).mean())))


def delong(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float, float]:
    """DeLong's test of two correlated AUROCs on the same samples: (AUROC a - AUROC b, its variance, two-sided p).
    Structural components from midranks (Sun & Xu 2014), O(N log N).

    `scores_a` / `scores_b` may be (S, N): one model trained with S seeds. The AUROC averaged over seeds is the mean
    of the seed-averaged structural components, so its variance over test samples (the models held fixed) comes
    from those averaged components; with one seed this is DeLong's test as published."""
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    components = []
    for runs in (np.atleast_2d(scores_a), np.atleast_2d(scores_b)):
        per_run = [_structural_components(y, scores, m, n) for scores in runs]
        v10, v01 = np.mean([c[0] for c in per_run], axis=0), np.mean([c[1] for c in per_run], axis=0)
        components.append((float(v10.mean()), v10, v01))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    s10 = np.cov(np.stack([v10_a, v10_b]))
    s01 = np.cov(np.stack([v01_a, v01_b]))
    covariance = s10 / m + s01 / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = float(auc_a - auc_b)
    if variance <= 0:
        return difference, variance, 1.0 if difference == 0 else 0.0
    z = abs(difference) / math.sqrt(variance)
    return difference, variance, float(math.erfc(z / math.sqrt(2)))


def delong_interval(y: np.ndarray, scores: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(low, AUROC, high): DeLong's variance of one AUROC, normal interval (as pROC's ci.auc, method delong)."""
    from scipy import stats

    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    v10, v01 = _structural_components(y, np.asarray(scores, dtype=float), m, n)
    auroc = float(v10.mean())
    se = math.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    return auroc - z * se, auroc, auroc + z * se


def _structural_components(y: np.ndarray, scores: np.ndarray, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per positive: share of negatives scored below it (ties half); per negative: share of positives above it."""
    all_ranks, pos_ranks, neg_ranks = _midrank(scores), _midrank(scores[y]), _midrank(scores[~y])
    return (all_ranks[y] - pos_ranks) / n, 1 - (all_ranks[~y] - neg_ranks) / m


def _midrank(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values))
    start = 0
    boundaries = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    for end in boundaries:
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order; NaN stays NaN."""
    values = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(~np.isnan(values))
    order = finite[np.argsort(values[finite], kind="mergesort")]
    adjusted = np.full(len(values), np.nan)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[index]))
        adjusted[index] = running
    return adjusted.tolist()

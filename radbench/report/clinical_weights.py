"""The operating points and calibration of metrics/clinical.py under every patient resample at once: a resample
gives each patient a multiplicity (report/resamples.py), every image of the patient carries it as its weight, and
one sort per class serves all resamples: compiled walks over the sorted scores per resample (operating points, the
equal-mass ECE bins), the counts behind Brier and the thresholded rates as per-patient sums times the counts. Equal,
resample by resample, to clinical_metrics on the resample's repeated samples (tests/test_clinical_metrics.py)."""

from __future__ import annotations

import numba
import numpy as np

from radbench.data.base import Task
from radbench.metrics.clinical import ECE_BINS, TARGETS, _classes, _column
from radbench.report.resamples import Resamples
from radbench.report.stats import _quiet, as_resamples


def clinical_under_weights(task: Task, targets: np.ndarray, scores: np.ndarray, class_names: tuple[str, ...],
                           thresholds: dict[str, float], weights: np.ndarray | Resamples,
                           calibrated: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """metric -> (R,) macro mean over classes (NaN-skipping; NaN where no class is defined in a resample), and
    `metric/<class>` -> (R,) per class where the task has more than one (per finding, one-vs-rest). `weights`:
    patient resamples, or (R, N) sample weights."""
    per_class: dict[str, list[np.ndarray]] = {}
    resamples = as_resamples(weights)
    classes = _classes(task, class_names)
    out: dict[str, np.ndarray] = {}
    for c, name in classes:
        known = ~np.isnan(targets[:, c])
        y, s = _column(targets, scores, c)
        w = resamples.subset(known)
        positives, negatives = w.per_patient(np.stack([y, 1 - y], axis=1).astype(float)).T
        defined = (positives > 0) & (negatives > 0)  # a resample with one label value has none of them
        values = {**_operating_points(y, s, w, positives, negatives), **_calibration(y, s, w)}
        if name in thresholds:
            values.update(_at_threshold(y, s >= thresholds[name], w))
        if calibrated is not None:
            after = _calibration(y, calibrated[known, c].astype(float), w)
            values.update({f"{key}@calibrated": value for key, value in after.items()})
        for key, value in values.items():
            per_class.setdefault(key, []).append(np.where(defined, value, np.nan))
            if len(classes) > 1:
                out[f"{key}/{name}"] = per_class[key][-1]
    with np.errstate(invalid="ignore"), _quiet():
        return {**{key: np.nanmean(np.stack(values), axis=0) for key, values in per_class.items()}, **out}


def _operating_points(y, s, w: Resamples, positives, negatives) -> dict[str, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    ordered = s[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True]).astype(np.int64)
    sensitivity, false_positive_rate = _operating_walk(
        w.patient[order], y[order].astype(np.bool_), starts, np.ascontiguousarray(w.counts),
        np.maximum(positives, 1), np.maximum(negatives, 1), np.array(TARGETS, dtype=np.float64))
    out = {}
    for t, target in enumerate(TARGETS):
        percent = int(round(target * 100))
        out[f"sens@spec{percent}"] = sensitivity[:, t]
        out[f"spec@sens{percent}"] = 1 - false_positive_rate[:, t]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _operating_walk(patient, positive, starts, counts, positives, negatives, targets):  # pragma: no cover
    """Down the scores, tie group by tie group: per resample and target, the sensitivity at the last point whose
    FPR is within 1 - target, and the FPR at the first point whose sensitivity reaches target ((0, 0) included).
    Both rates only grow down the scores, so each is a comparison of running sums against fixed bounds."""
    resamples, count = counts.shape[0], len(targets)
    sensitivity = np.zeros((resamples, count))
    false_positive_rate = np.full((resamples, count), np.inf)
    for b in numba.prange(resamples):
        row = counts[b]
        fp_bound = np.empty(count)  # FPR <= 1 - target, as a false-positive weight
        tp_bound = np.empty(count)  # TPR >= target, as a true-positive weight
        reached = np.zeros(count, dtype=np.bool_)
        for t in range(count):
            fp_bound[t] = (1 - targets[t] + 1e-12) * negatives[b]
            tp_bound[t] = (targets[t] - 1e-12) * positives[b]
            if 0.0 >= tp_bound[t]:
                false_positive_rate[b, t] = 0.0
                reached[t] = True
        tp = 0.0
        fp = 0.0
        last_tp = np.zeros(count)
        for g in range(len(starts) - 1):
            for k in range(starts[g], starts[g + 1]):
                if positive[k]:
                    tp += row[patient[k]]
                else:
                    fp += row[patient[k]]
            for t in range(count):
                if fp <= fp_bound[t]:
                    last_tp[t] = tp
                if not reached[t] and tp >= tp_bound[t]:
                    false_positive_rate[b, t] = fp / negatives[b]
                    reached[t] = True
        for t in range(count):
            sensitivity[b, t] = last_tp[t] / positives[b]
    return sensitivity, false_positive_rate


def _calibration(y, s, w: Resamples) -> dict[str, np.ndarray]:
    """Brier, and ECE over equal-mass bins of each resample's repeated samples (a sample's copies may straddle
    two bins, as they do when the resample is written out and split)."""
    sums = w.per_patient(np.stack([(s - y) ** 2, np.ones(len(y))], axis=1))
    order = np.argsort(s, kind="mergesort")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"brier": sums[:, 0] / sums[:, 1],
                "ece": _ece_walk(w.patient[order], (y - s)[order], np.ascontiguousarray(w.counts), sums[:, 1],
                                 ECE_BINS)}


@numba.njit(parallel=True, cache=True, nogil=True)
def _ece_walk(patient, gap, counts, totals, bins):  # pragma: no cover - compiled
    """Per resample: its copies in score order cut into `bins` parts as np.array_split cuts (the first parts one
    larger), the |sum of (label - score)| of each part added up, over the copies."""
    out = np.empty(counts.shape[0])
    for b in numba.prange(counts.shape[0]):
        total = totals[b]
        if total <= 0:
            out[b] = np.nan
            continue
        parts = min(bins, total)
        size = total // parts
        extra = total % parts
        sums = np.zeros(bins)
        part = 0
        position = 0.0
        end = min(size + min(1.0, extra), total)  # where part 0 ends
        row = counts[b]
        for k in range(len(patient)):
            remaining = row[patient[k]]
            if remaining <= 0:
                continue
            if position + remaining <= end:  # all its copies in the current part: the common case
                sums[part] += remaining * gap[k]
                position += remaining
                continue
            while remaining > 0 and part < bins:
                room = end - position
                if room <= 0:
                    part += 1
                    end = min((part + 1) * size + min(part + 1.0, extra), total)
                    continue
                take = min(room, remaining)
                sums[part] += take * gap[k]
                position += take
                remaining -= take
        out[b] = np.abs(sums).sum() / total
    return out


def _at_threshold(y, predicted, w: Resamples) -> dict[str, np.ndarray]:
    tp, fp, fn, tn = w.per_patient(np.stack([predicted & (y == 1), predicted & (y == 0), ~predicted & (y == 1),
                                             ~predicted & (y == 0)], axis=1).astype(float)).T

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    return {"sensitivity@youden": ratio(tp, tp + fn), "specificity@youden": ratio(tn, tn + fp),
            "ppv@youden": ratio(tp, tp + fp), "npv@youden": ratio(tn, tn + fn),
            "f1@youden": ratio(2 * tp, 2 * tp + fp + fn)}

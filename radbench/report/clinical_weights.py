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
from radbench.report.resamples import BLOCK, Resamples
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
        w.patient[order], y[order].astype(np.bool_), starts, w.by_block,
        np.maximum(positives, 1), np.maximum(negatives, 1), np.array(TARGETS, dtype=np.float64))
    out = {}
    for t, target in enumerate(TARGETS):
        percent = int(round(target * 100))
        out[f"sens@spec{percent}"] = sensitivity[:, t]
        out[f"spec@sens{percent}"] = 1 - false_positive_rate[:, t]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _operating_walk(patient, positive, starts, by_block, positives, negatives, targets):  # pragma: no cover
    """Down the scores, tie group by tie group: per resample and target, the sensitivity at the last point whose
    FPR is within 1 - target, and the FPR at the first point whose sensitivity reaches target ((0, 0) included).
    Both rates only grow down the scores, so each is a comparison of running sums against fixed bounds. Resamples
    go in blocks side by side (report/resamples.py); a block stops once no bound can change any more."""
    resamples, count = len(positives), len(targets)
    sensitivity = np.zeros((resamples, count))
    false_positive_rate = np.full((resamples, count), np.inf)
    for block in numba.prange(by_block.shape[0]):
        counts, first = by_block[block], block * BLOCK
        lanes = min(resamples, first + BLOCK) - first
        fp_bound = np.full((count, BLOCK), np.inf)  # FPR <= 1 - target, as a false-positive weight
        tp_bound = np.zeros((count, BLOCK))  # TPR >= target, as a true-positive weight
        last_tp = np.zeros((count, BLOCK))
        first_fp = np.full((count, BLOCK), np.inf)
        largest_fp_bound = 0.0
        for t in range(count):
            for j in range(lanes):
                fp_bound[t, j] = (1 - targets[t] + 1e-12) * negatives[first + j]
                tp_bound[t, j] = (targets[t] - 1e-12) * positives[first + j]
                largest_fp_bound = max(largest_fp_bound, fp_bound[t, j])
            for j in range(BLOCK):
                if 0.0 >= tp_bound[t, j]:
                    first_fp[t, j] = 0.0  # reached before the first score (and the padding lanes: done)
        tp = np.zeros(BLOCK)
        fp = np.zeros(BLOCK)
        for g in range(len(starts) - 1):
            for k in range(starts[g], starts[g + 1]):
                row = counts[patient[k]]
                if positive[k]:
                    for j in range(BLOCK):
                        tp[j] += row[j]
                else:
                    for j in range(BLOCK):
                        fp[j] += row[j]
            for t in range(count):
                for j in range(BLOCK):
                    if fp[j] <= fp_bound[t, j]:
                        last_tp[t, j] = tp[j]
                    if first_fp[t, j] == np.inf and tp[j] >= tp_bound[t, j]:
                        first_fp[t, j] = fp[j]
            if g % 256 == 255 and fp[:lanes].min() > largest_fp_bound and first_fp.max() < np.inf:
                break  # every bound passed in every resample: nothing further down can change a value
        for t in range(count):
            for j in range(lanes):
                sensitivity[first + j, t] = last_tp[t, j] / positives[first + j]
                false_positive_rate[first + j, t] = first_fp[t, j] / negatives[first + j]
    return sensitivity, false_positive_rate


def _calibration(y, s, w: Resamples) -> dict[str, np.ndarray]:
    """Brier, and ECE over equal-mass bins of each resample's repeated samples (a sample's copies may straddle
    two bins, as they do when the resample is written out and split)."""
    sums = w.per_patient(np.stack([(s - y) ** 2, np.ones(len(y))], axis=1))
    order = np.argsort(s, kind="mergesort")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"brier": sums[:, 0] / sums[:, 1],
                "ece": _ece_walk(w.patient[order], (y - s)[order], w.by_block, sums[:, 1], ECE_BINS)}


@numba.njit(parallel=True, cache=True, nogil=True)
def _ece_walk(patient, gap, by_block, totals, bins):  # pragma: no cover - compiled
    """Per resample: its copies in score order cut into `bins` parts as np.array_split cuts (the first parts one
    larger), the |sum of (label - score)| of each part added up, over the copies. Walked as the running sum of the
    gaps over the copies, read where it crosses each part's end; resamples in blocks side by side."""
    resamples = len(totals)
    out = np.empty(resamples)
    for block in numba.prange(by_block.shape[0]):
        counts, first = by_block[block], block * BLOCK
        lanes = min(resamples, first + BLOCK) - first
        parts = np.zeros(BLOCK)
        size = np.zeros(BLOCK)
        extra = np.zeros(BLOCK)
        total = np.zeros(BLOCK)
        end = np.full(BLOCK, np.inf)  # where the current part ends (in copies); inf: no part left
        part = np.zeros(BLOCK)
        position = np.zeros(BLOCK)
        running = np.zeros(BLOCK)  # the gaps summed over the copies so far
        at_last_end = np.zeros(BLOCK)
        absolute = np.zeros(BLOCK)
        for j in range(lanes):
            total[j] = totals[first + j]
            if total[j] > 0:
                parts[j] = min(bins, total[j])
                size[j] = total[j] // parts[j]
                extra[j] = total[j] % parts[j]
                end[j] = min(size[j] + min(1.0, extra[j]), total[j])
        for k in range(len(patient)):
            row, gap_k = counts[patient[k]], gap[k]
            crossed = False
            for j in range(BLOCK):
                running[j] += row[j] * gap_k
                position[j] += row[j]
                crossed |= position[j] >= end[j]
            if not crossed:
                continue
            for j in range(BLOCK):
                while position[j] >= end[j]:  # a part ends among these copies (bins times per resample)
                    crossing = running[j] - (position[j] - end[j]) * gap_k
                    absolute[j] += abs(crossing - at_last_end[j])
                    at_last_end[j] = crossing
                    part[j] += 1
                    end[j] = np.inf if part[j] >= parts[j] else \
                        min((part[j] + 1) * size[j] + min(part[j] + 1, extra[j]), total[j])
        for j in range(lanes):
            out[first + j] = absolute[j] / total[j] if total[j] > 0 else np.nan
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

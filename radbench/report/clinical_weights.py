"""The operating points and calibration of metrics/clinical.py under every patient resample at once: each
resample is a row of sample weights (a patient's images carry its multiplicity), so one sort per class serves all
resamples, as stats.metrics_under_weights does for AUROC. Equal, resample by resample, to clinical_metrics on the
resample's repeated samples (tests/test_clinical_metrics.py checks it)."""

from __future__ import annotations

import numpy as np

from radbench.data.base import Task
from radbench.metrics.clinical import ECE_BINS, TARGETS, _classes, _column
from radbench.report.stats import _quiet


def clinical_under_weights(task: Task, targets: np.ndarray, scores: np.ndarray, class_names: tuple[str, ...],
                           thresholds: dict[str, float], weights: np.ndarray,
                           calibrated: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """metric -> (R,) macro mean over classes (NaN-skipping; NaN where no class is defined in a resample), and
    `metric/<class>` -> (R,) per class where the task has more than one (per finding, one-vs-rest)."""
    per_class: dict[str, list[np.ndarray]] = {}
    weights = np.atleast_2d(weights)
    classes = _classes(task, class_names)
    out: dict[str, np.ndarray] = {}
    for c, name in classes:
        known = ~np.isnan(targets[:, c])
        y, s = _column(targets, scores, c)
        w = weights[:, known]
        positives, negatives = w @ y, w @ (1 - y)
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


def _operating_points(y, s, w, positives, negatives) -> dict[str, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    ordered = s[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    wo = w[:, order]
    true_positive = np.cumsum(wo * y[order], axis=1)[:, last_of_tie]
    false_positive = np.cumsum(wo * (1 - y[order]), axis=1)[:, last_of_tie]
    zeros = np.zeros((len(w), 1))
    tpr = np.hstack([zeros, true_positive]) / np.maximum(positives, 1)[:, None]
    fpr = np.hstack([zeros, false_positive]) / np.maximum(negatives, 1)[:, None]
    out = {}
    for target in TARGETS:
        percent = int(round(target * 100))
        out[f"sens@spec{percent}"] = np.where(fpr <= 1 - target + 1e-12, tpr, -np.inf).max(axis=1)
        out[f"spec@sens{percent}"] = 1 - np.where(tpr >= target - 1e-12, fpr, np.inf).min(axis=1)
    return out


def _calibration(y, s, w) -> dict[str, np.ndarray]:
    """Brier, and ECE over equal-mass bins of each resample's repeated samples (a sample's copies may straddle
    two bins, as they do when the resample is written out and split); resamples in chunks of bounded memory."""
    rows = max(1, CHUNK_ELEMENTS // (len(y) * ECE_BINS))
    parts = [_calibration_rows(y, s, w[i:i + rows]) for i in range(0, len(w), rows)]
    return {key: np.concatenate([part[key] for part in parts]) for key in ("brier", "ece")}


CHUNK_ELEMENTS = 4_000_000  # (resamples x samples x bins) floats held at once: 32 MB


def _calibration_rows(y, s, w) -> dict[str, np.ndarray]:
    total = w.sum(axis=1)
    brier = (w @ (s - y) ** 2) / total
    order = np.argsort(s, kind="mergesort")
    wo, gap = w[:, order], (y - s)[order]
    end = np.cumsum(wo, axis=1)
    start = end - wo
    count = np.minimum(ECE_BINS, total)
    size, extra = total // count, total % count
    k = np.arange(ECE_BINS + 1)[None, :]
    edges = np.minimum(k * size[:, None] + np.minimum(k, extra[:, None]), total[:, None])  # array_split's cuts
    overlap = np.clip(np.minimum(end[:, :, None], edges[:, None, 1:])
                      - np.maximum(start[:, :, None], edges[:, None, :-1]), 0, None)  # (R, n, bins): copies in bin b
    ece = np.abs(np.einsum("rnb,n->rb", overlap, gap)).sum(axis=1) / total
    return {"brier": brier, "ece": ece}


def _at_threshold(y, predicted, w) -> dict[str, np.ndarray]:
    tp, fp = w @ (predicted & (y == 1)), w @ (predicted & (y == 0))
    fn, tn = w @ (~predicted & (y == 1)), w @ (~predicted & (y == 0))

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    return {"sensitivity@youden": ratio(tp, tp + fn), "specificity@youden": ratio(tn, tn + fp),
            "ppv@youden": ratio(tp, tp + fp), "npv@youden": ratio(tn, tn + fn),
            "f1@youden": ratio(2 * tp, 2 * tp + fp + fn)}

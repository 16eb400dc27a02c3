"""The numbers radiology papers report beside AUROC, per class (per finding for multi-label; the positive class of a
binary task; one-vs-rest for multi-class), each stored as `<name>/<class>` with its macro mean as `<name>`:

- operating points on the test ROC: sensitivity at 90 % / 95 % specificity, specificity at 90 % / 95 % sensitivity;
- at a threshold chosen on **val** (Youden's J = sensitivity + specificity - 1, highest on val, from the chosen
  model's val scores; never on test) and applied once to test: sensitivity, specificity, PPV, NPV, F1;
- calibration: Brier score and expected calibration error over 10 equal-mass bins of the predicted probability.

A class with one label value in a split has none of these (NaN, and the note says why)."""

from __future__ import annotations

import numpy as np

from radbench.data.base import Task

TARGETS = (0.90, 0.95)
ECE_BINS = 10


def clinical_metrics(task: Task, val_targets: np.ndarray | None, val_scores: np.ndarray | None,
                     test_targets: np.ndarray, test_scores: np.ndarray, class_names: tuple[str, ...],
                     thresholds: dict[str, float] | None = None) -> tuple[dict[str, float], dict]:
    """(metrics, notes): see the module's text. Without val scores the Youden-threshold numbers are left out, unless
    `thresholds` (per class, chosen on val earlier) are given: the report's resamples reuse the job's own."""
    metrics: dict[str, list[float]] = {}
    notes: dict = {}
    for c, name in _classes(task, class_names):
        y, s = _column(test_targets, test_scores, c)
        if len(np.unique(y)) < 2:
            notes.setdefault("clinical_undefined", []).append(f"{name}: the test split has one label value")
            continue
        values = {**_operating_points(y, s), "brier": float(np.mean((s - y) ** 2)), "ece": expected_calibration_error(y, s)}
        if thresholds is not None and name in thresholds:
            values.update(at_threshold(y, s, thresholds[name]))
        elif val_scores is not None and val_targets is not None:
            vy, vs = _column(val_targets, val_scores, c)
            if len(np.unique(vy)) < 2:
                notes.setdefault("youden_undefined", []).append(f"{name}: the val split has one label value")
            else:
                threshold = youden_threshold(vy, vs)
                notes.setdefault("youden_threshold", {})[name] = threshold
                values.update(at_threshold(y, s, threshold))
        for key, value in values.items():
            metrics.setdefault(key, []).append(value)
            metrics[f"{key}/{name}"] = [value]
    out = {}
    for key, values in metrics.items():  # plain Python: the report calls this for every patient resample
        finite = [v for v in values if v == v]
        out[key] = sum(finite) / len(finite) if finite else float("nan")
    return out, notes


def calibrated_metrics(method: str, task: Task, val_targets: np.ndarray | None, val_scores: np.ndarray | None,
                       test_targets: np.ndarray, test_scores: np.ndarray, class_names: tuple[str, ...]
                       ) -> tuple[dict[str, float], dict]:
    """Brier and ECE of the test scores after a map fitted on val (metrics/calibration.py), named
    `brier@calibrated`, `ece@calibrated` (and per class); with the map's parameters, or the reason it is undefined."""
    from radbench.metrics.calibration import apply_calibration, fit_calibration

    if val_scores is None or val_targets is None:
        return {"brier@calibrated": float("nan"), "ece@calibrated": float("nan")}, \
            {"method": method, "undefined": "the protocol gave no val scores to fit the map on"}
    params = fit_calibration(method, task, val_targets, val_scores)
    calibrated = apply_calibration(params, task, test_scores)
    metrics, _ = clinical_metrics(task, None, None, test_targets, calibrated, class_names)
    out = {f"{key.split('/')[0]}@calibrated{key[len(key.split('/')[0]):]}": value for key, value in metrics.items()
           if key.split("/")[0] in ("brier", "ece")}
    return out or {"brier@calibrated": float("nan"), "ece@calibrated": float("nan")}, params


def _classes(task: Task, class_names: tuple[str, ...]) -> list[tuple[int, str]]:
    if task is Task.BINARY:
        return [(1, class_names[1])]
    return list(enumerate(class_names))


def _column(targets: np.ndarray, scores: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    known = ~np.isnan(targets[:, c])
    return targets[known, c].astype(int), scores[known, c].astype(float)


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0): scikit-learn's
    roc_curve without dropping collinear points (the report calls this for every patient resample)."""
    order = np.argsort(-s, kind="mergesort")
    ordered, positive = s[order], y[order].astype(bool)
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    true_positive = np.cumsum(positive)[last_of_tie]
    false_positive = np.cumsum(~positive)[last_of_tie]
    return (np.r_[0, false_positive] / max(1, (~positive).sum()), np.r_[0, true_positive] / max(1, positive.sum()))


def _operating_points(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    false_positive, true_positive = _roc(y, s)
    out = {}
    for target in TARGETS:
        percent = int(round(target * 100))
        out[f"sens@spec{percent}"] = float(true_positive[false_positive <= 1 - target + 1e-12].max())
        out[f"spec@sens{percent}"] = float(1 - false_positive[true_positive >= target - 1e-12].min())
    return out


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The score threshold (predict positive at score >= it) with the highest sensitivity + specificity - 1."""
    from sklearn.metrics import roc_curve

    false_positive, true_positive, thresholds = roc_curve(y, s)
    best = int(np.argmax(true_positive - false_positive))
    return float(min(thresholds[best], 1.0)) if np.isfinite(thresholds[best]) else float(s.max())


def at_threshold(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = s >= threshold
    tp, fp = int((predicted & (y == 1)).sum()), int((predicted & (y == 0)).sum())
    fn, tn = int((~predicted & (y == 1)).sum()), int((~predicted & (y == 0)).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"sensitivity@youden": ratio(tp, tp + fn), "specificity@youden": ratio(tn, tn + fp),
            "ppv@youden": ratio(tp, tp + fp), "npv@youden": ratio(tn, tn + fn),
            "f1@youden": ratio(2 * tp, 2 * tp + fp + fn)}


def equal_mass_bins(y: np.ndarray, s: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sum of labels, sum of scores, count) per equal-mass bin of the predicted probability: sorted by score, cut as
    np.array_split cuts (the first bins one larger)."""
    order = np.argsort(s, kind="mergesort")
    count = min(bins, len(s))
    size, extra = divmod(len(s), count)
    sizes = np.array([size + 1] * extra + [size] * (count - extra))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    return np.add.reduceat(y[order].astype(float), starts), np.add.reduceat(s[order], starts), sizes


def expected_calibration_error(y: np.ndarray, s: np.ndarray, bins: int = ECE_BINS) -> float:
    """Equal-mass bins of the predicted probability: the size-weighted mean |observed rate - mean prediction|."""
    labels, scores, _ = equal_mass_bins(y, s, bins)
    return float(np.abs(labels - scores).sum() / len(s))  # size x |mean rate - mean score| = |sum gap|

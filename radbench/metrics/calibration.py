"""Post-hoc calibration chosen with `calibrate:` on a classification protocol, fitted on **val** only.

- `temperature`: one temperature T for all classes, scores become softmax(log p / T) (multi-class), or
  sigmoid(logit(p) / T) per finding (binary, multi-label); T minimises the val negative log-likelihood.
- `platt`: per class (the positive class of a binary task; each finding of a multi-label one) a logistic map
  sigmoid(a * logit(p) + b) fitted on val by scikit-learn's logistic regression. Multi-class tasks have no
  per-class Platt map that keeps the scores a distribution: use temperature there.

The val scores are those of the chosen model trained on train only (the train+val refit has seen val); the map is
then applied to the refit model's test scores. On binary and multi-label tasks both maps keep each class's
ranking, so AUROC and the operating points do not move; on multi-class ones temperature keeps every prediction
(argmax). Only Brier and ECE are stored calibrated, beside the raw ones: `brier@calibrated`, `ece@calibrated`.
The fitted parameters are kept in the job's details so the report applies the same map."""

from __future__ import annotations

import numpy as np

from radbench.data.base import Task

METHODS = ("temperature", "platt")
_EPS = 1e-6


def check_method(method: str, task: Task) -> str | None:
    """Why `method` cannot calibrate a `task` dataset, or None."""
    if method == "platt" and task is Task.MULTICLASS:
        return "calibrate: platt fits one map per class and would not keep multi-class scores a distribution; " \
               "use calibrate: temperature"
    return None


def fit_calibration(method: str, task: Task, val_targets: np.ndarray, val_scores: np.ndarray) -> dict:
    """The map's parameters as plain JSON: {"method", "temperature"} or {"method", "platt": [[a, b] | None, ...]}."""
    if method == "temperature":
        return {"method": method, "temperature": _fit_temperature(task, val_targets, val_scores)}
    if method == "platt":
        return {"method": method, "platt": [_fit_platt(val_targets[:, c], val_scores[:, c])
                                            for c in range(val_scores.shape[1])]}
    raise ValueError(f"unknown calibration {method!r}; use one of {', '.join(METHODS)}")


def apply_calibration(params: dict, task: Task, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if params["method"] == "temperature":
        return _scaled(task, scores, params["temperature"])
    out = scores.copy()
    for c, ab in enumerate(params["platt"]):
        if ab is not None:
            out[:, c] = _sigmoid(ab[0] * _logit(scores[:, c]) + ab[1])
    if task is Task.BINARY:  # the negative column stays the complement of the calibrated positive one
        out[:, 0] = 1 - out[:, 1]
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)  # kNN and small heads give exact 0 / 1
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _scaled(task: Task, scores: np.ndarray, temperature: float) -> np.ndarray:
    if task is Task.MULTICLASS:
        logits = np.log(np.clip(scores, _EPS, 1)) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)
    out = _sigmoid(_logit(scores) / temperature)
    if task is Task.BINARY:
        out[:, 0] = 1 - out[:, 1]
    return out


def _negative_log_likelihood(task: Task, targets: np.ndarray, scores: np.ndarray) -> float:
    if task is Task.MULTICLASS:
        return float(-np.mean(np.log(np.clip((targets * scores).sum(axis=1), _EPS, 1))))
    columns = [1] if task is Task.BINARY else range(scores.shape[1])
    total, count = 0.0, 0
    for c in columns:
        known = ~np.isnan(targets[:, c])
        y, p = targets[known, c], np.clip(scores[known, c], _EPS, 1 - _EPS)
        total -= float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))
        count += int(known.sum())
    return total / max(count, 1)


def _fit_temperature(task: Task, targets: np.ndarray, scores: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: _negative_log_likelihood(task, targets, _scaled(task, scores, np.exp(log_t))),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def _fit_platt(targets: np.ndarray, scores: np.ndarray) -> list[float] | None:
    """[a, b], or None where val has one label value for this class (its scores stay as they were)."""
    from sklearn.linear_model import LogisticRegression

    known = ~np.isnan(targets)
    y = targets[known].astype(int)
    if len(np.unique(y)) < 2:
        return None
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000).fit(_logit(scores[known])[:, None], y)
    return [float(model.coef_[0, 0]), float(model.intercept_[0])]

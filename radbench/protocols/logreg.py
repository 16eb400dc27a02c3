"""Logistic regression (scikit-learn, L2, L-BFGS): C chosen on val, refit on train+val, tested once.

Multi-label: one binary model per class, fitted on the samples whose label is known; a class with a single
label value in the fitting set predicts that value's frequency (and is named in the details)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from radbench.device import maths_threads
from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    finish,
    pick_best,
)
from radbench.schema import PositiveFloat

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

DINOV2_C_GRID = [float(c) for c in np.logspace(-6, 5, 45)]


class LogregConfig(ProtocolConfigBase):
    C: list[PositiveFloat] = Field(default=DINOV2_C_GRID, min_length=1)
    max_iter: int = Field(default=1000, ge=1)
    normalize: Literal["none", "standard"] = "standard"


class _Fit:
    """A fitted model for one (feature type, C) on one fitting set; counts non-converged solves."""

    def __init__(self, cfg: LogregConfig, C: float, x: np.ndarray, targets: np.ndarray, single_label: bool, seed: int):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x) if cfg.normalize == "standard" else None
        x = self.scaler.transform(x) if self.scaler else x
        self.single_label = single_label
        self.constant_classes: list[int] = []
        self.not_converged = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if single_label:
                self.model = self._fit(cfg, C, x, targets.argmax(1), seed)
            else:
                self.models = []
                for c in range(targets.shape[1]):
                    known = ~np.isnan(targets[:, c])
                    y = targets[known, c].astype(int)
                    if len(np.unique(y)) < 2:
                        self.constant_classes.append(c)
                        self.models.append(float(y.mean()) if len(y) else 0.5)
                    else:
                        self.models.append(self._fit(cfg, C, x[known], y, seed))
        self.not_converged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.num_classes = targets.shape[1]

    @staticmethod
    def _fit(cfg: LogregConfig, C: float, x: np.ndarray, y: np.ndarray, seed: int) -> LogisticRegression:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=cfg.max_iter, random_state=seed).fit(x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = self.scaler.transform(x) if self.scaler else x
        if self.single_label:
            scores = np.zeros((len(x), self.num_classes))
            scores[:, self.model.classes_] = self.model.predict_proba(x)
            return scores
        columns = [np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in self.models]
        return np.stack(columns, axis=1)


def run_logreg(cfg: LogregConfig, inputs: ProtocolInput) -> ProtocolResult:
    # one maths thread: L-BFGS on a study's feature matrices (measured up to 20 000 x 768) is faster on one than on
    # two even on a quiet machine, and several threads fight on a loaded one (benchmarks/probe_threads.py)
    import sklearn.linear_model  # noqa: F401  (loads scipy's OpenBLAS and sklearn's OpenMP: limited only once loaded)

    with maths_threads(1):
        return _run_logreg(cfg, inputs)


def _run_logreg(cfg: LogregConfig, inputs: ProtocolInput) -> ProtocolResult:
    single = inputs.task.single_label
    candidates, kept_scores, not_converged = [], {}, 0
    best_value = -np.inf
    grid = [(f, C) for f in inputs.feature_types for C in cfg.C]
    with inputs.reporter.task(f"  logreg: {len(grid)} fits", len(grid)) as advance:
        for feature_type, C in grid:
            fit = _Fit(cfg, C, inputs.features.get(feature_type, "train"), inputs.targets["train"], single, inputs.seed)
            not_converged += fit.not_converged
            scores = fit.predict(inputs.features.get(feature_type, "val"))
            value = inputs.selection_value(inputs.targets["val"], scores)
            candidates.append({"params": {"feature": feature_type, "C": C}, "val": value})
            if len(candidates) == 1 or value > best_value:  # keep only scores that pick_best can choose
                kept_scores[len(candidates) - 1] = scores
                best_value = max(best_value, value) if not np.isnan(value) else best_value
            advance(1)
    chosen = pick_best([c["val"] for c in candidates])
    feature_type, C = grid[chosen]
    refit = _Fit(cfg, C, inputs.train_val_features(feature_type), inputs.train_val_targets, single, inputs.seed)
    test_scores = refit.predict(inputs.features.get(feature_type, "test"))
    details: dict = {}
    if not_converged + refit.not_converged:
        details["not_converged_fits"] = not_converged + refit.not_converged
    if refit.constant_classes:
        details["constant_classes"] = [inputs.class_names[c] for c in refit.constant_classes]
    result = finish(inputs, candidates, chosen, kept_scores[chosen], test_scores, details)
    result.predict = lambda split: refit.predict(inputs.features.get(feature_type, split))
    result.costs["trainable_params"] = float(len(inputs.features.columns(feature_type)) + 1) * test_scores.shape[1]
    return result


PROTOCOLS.add("logreg", ProtocolSpec(
    "logreg", LogregConfig, run_logreg, "scikit-learn logistic regression, C chosen on val, refit on train+val",
    seed_free=lambda cfg: True))  # L-BFGS from zero: scikit-learn reads random_state only for sag / saga / liblinear

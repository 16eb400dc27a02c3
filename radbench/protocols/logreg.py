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
    """A fitted model for one (feature type, C) on one fitting set; counts the solves stopped at max_iter (from
    `n_iter_`, not from warnings: those are process-wide and lost between threads fitting side by side)."""

    def __init__(self, cfg: LogregConfig, C: float, x: np.ndarray, targets: np.ndarray, single_label: bool, seed: int):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x) if cfg.normalize == "standard" else None
        x = self.scaler.transform(x) if self.scaler else x
        self.single_label = single_label
        self.constant_classes: list[int] = []
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
        fitted = [self.model] if single_label else [m for m in self.models if not isinstance(m, float)]
        self.not_converged = sum(int(np.max(m.n_iter_) >= cfg.max_iter) for m in fitted)
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
    from sklearn.exceptions import ConvergenceWarning

    with maths_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted per fit, said once in the job's details
        return _run_logreg(cfg, inputs)


SIDE_BY_SIDE_MIN_VALUES = 4_000_000  # train rows x feature columns from which the grid's fits run side by side


def grid_workers(inputs: ProtocolInput, feature_type: str) -> int:
    """Fits side by side only on large features: there L-BFGS's matrix products (which release the GIL) dominate,
    and 45 fits on 20 000 x 768 took 1.1 s on two threads against 2.5 s one at a time; on small ones Python holds the
    GIL and two threads were slower (2 000 x 384: 0.80 s against 0.60 s), so they run one at a time
    (benchmarks/probe_threads.py)."""
    values = inputs.features.get(feature_type, "train").size
    return inputs.fit_workers if values >= SIDE_BY_SIDE_MIN_VALUES else 1


def _run_logreg(cfg: LogregConfig, inputs: ProtocolInput) -> ProtocolResult:
    from concurrent.futures import ThreadPoolExecutor

    single = inputs.task.single_label
    candidates, kept_scores, not_converged = [], {}, 0
    best_value = -np.inf
    grid = [(f, C) for f in inputs.feature_types for C in cfg.C]

    def fit_on_train(point: tuple[str, float]) -> tuple[_Fit, np.ndarray, float]:
        feature_type, C = point
        fit = _Fit(cfg, C, inputs.features.get(feature_type, "train"), inputs.targets["train"], single, inputs.seed)
        scores = fit.predict(inputs.features.get(feature_type, "val"))
        return fit, scores, inputs.selection_value(inputs.targets["val"], scores)

    workers = min(max(grid_workers(inputs, f) for f in inputs.feature_types), len(grid))
    # taken in grid order whatever the workers, so the choice is the one-at-a-time one
    with inputs.reporter.task(f"  logreg: {len(grid)} fits", len(grid)) as advance, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for (feature_type, C), (fit, scores, value) in zip(grid, pool.map(fit_on_train, grid)):
            not_converged += fit.not_converged
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

"""Intervals and comparisons that include training randomness, not only the sampling of test patients.

A backbone's score on a dataset x protocol is the mean over its runs (seeds x repeated draws). Two sources of
variance move that mean: which test patients were sampled (the patient bootstrap of report/stats.py) and how the
runs fell (seed, few-shot draw, initialisation, data order). Every run is scored on the same B patient resamples,
so `draws[r, b]` is run r's metric under resample b. Then:

- the *two-level* interval resamples runs within each patient resample: draw b takes the runs r_b (with
  replacement) and averages draws[r_b, b]. The run part is scaled to the between-run variance left once each
  run's own test-sampling noise is taken out (that noise already sits in the patient part), made unbiased and
  widened to Student's t(R - 1) for few runs, so a 95 % interval over 5 runs covers as it says
  (tests/test_verdicts.py measures the coverage);
- comparisons pair runs where they pair (the same seed and repeat in both backbones) and take the same patient
  resamples, so differences in the test set cancel; p is the bootstrap's two-sided tail of the difference;
- where runs differ but a backbone has fewer than MIN_RUNS of them, nothing is claimed: "too few runs to tell";
- where every run gave the same predictions (a deterministic protocol such as kNN) or there is one run, the
  test-patient-only interval and test (DeLong for a binary AUROC) are all there is, and they are labelled so."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from radbench.report.stats import _quiet  # nanmean / nanvar of all-NaN columns: NaN by design

MIN_RUNS = 3
Z_80_POWER = 0.8416212335729143  # the normal quantile at 0.8: 80 % power
INTERVAL_ALL = "runs × test patients"
INTERVAL_TEST = "test patients (one run)"
INTERVAL_SAME = "test patients (runs identical)"


@dataclass
class Runs:
    """One backbone's runs on one dataset x protocol x metric."""

    backbone: str
    keys: list[tuple[int, int]]  # (seed, repeat) of each run: what pairs runs across backbones
    estimates: np.ndarray  # (R,) the metric of each run on the whole test set
    draws: np.ndarray  # (R, B) the metric of each run under each patient resample
    binary: list | None = None  # per run (sample ids, y, positive scores) where DeLong applies, else None
    identical: bool = True  # every run gave the same predictions (or there is one run)

    @property
    def varies(self) -> bool:
        return len(self.keys) > 1 and not self.identical

    @property
    def test_draws(self) -> np.ndarray:
        """The run-averaged metric under each patient resample (the runs held fixed)."""
        return _nanmean(self.draws, axis=0)

    @property
    def interval_kind(self) -> str:
        if self.varies:
            return INTERVAL_ALL
        return INTERVAL_SAME if len(self.keys) > 1 else INTERVAL_TEST


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(values, axis=axis)


def small_sample_factor(runs: int, level: float = 0.95) -> float:
    """sqrt(R / (R - 1)) * t_{R-1} / z: what widens the run part of a bootstrap to a t interval's width."""
    from scipy import stats

    if runs < 2:
        return 1.0
    tail = 1 - (1 - level) / 2
    return math.sqrt(runs / (runs - 1)) * stats.t.ppf(tail, runs - 1) / stats.norm.ppf(tail)


def two_level_draws(runs: Runs, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """(B,) the run-averaged metric with runs resampled within each patient resample (see the module's text)."""
    return _with_runs(runs.draws, runs.estimates, seed, level) if runs.varies else runs.test_draws


def _with_runs(draws: np.ndarray, estimates: np.ndarray, seed: int, level: float) -> np.ndarray:
    """Patient-resampled run means plus a resampled run part, scaled to the between-run variance that test sampling
    does not explain (each run's own test-sampling noise already moves the runs apart: counting it in the run part
    too would count it twice), widened to Student's t for few runs."""
    count, resamples = draws.shape
    fixed = _nanmean(draws, axis=0)
    rng = np.random.default_rng([seed, 7, count])
    picked = rng.integers(0, count, size=(resamples, count))
    resampled = _nanmean(np.take_along_axis(draws.T, picked, axis=1), axis=1)
    with _quiet():  # an undefined metric (all NaN) or a single finite run leaves the run part out: no warning
        observed = float(np.nanvar(estimates, ddof=1))
        noise = float(np.nanmean(np.nanvar(draws - fixed, axis=1, ddof=1))) * count / (count - 1)
    if not observed > 0:
        return fixed
    scale = math.sqrt(max(0.0, observed - noise) / (observed * (count - 1) / count))
    return fixed + small_sample_factor(count, level) * math.sqrt((count - 1) / count) * scale * (resampled - fixed)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def paired_difference(a: Runs, b: Runs, seed: int = 0) -> np.ndarray:
    """(B,) draws of mean(a) - mean(b): runs of the same (seed, repeat) resampled together where both have them
    (paired), each side's runs on their own otherwise; the same patient resamples on both sides."""
    common = [k for k in a.keys if k in set(b.keys)]
    if len(common) >= 2 and len(common) == len(a.keys) == len(b.keys):
        order_b = [b.keys.index(k) for k in a.keys]
        gap = a.draws - b.draws[order_b]  # (R, B): paired per run and per patient resample
        return _with_runs(gap, a.estimates - b.estimates[order_b], seed, 0.95)
    return two_level_draws(a, seed) - two_level_draws(b, seed + 1)


def p_better(a: Runs, b: Runs) -> float:
    """P(A > B) over paired runs (same seed and repeat; ties count half); over every pair of runs where none pair."""
    common = [k for k in a.keys if k in set(b.keys)]
    if common:
        x = np.array([a.estimates[a.keys.index(k)] for k in common])
        y = np.array([b.estimates[b.keys.index(k)] for k in common])
    else:
        x, y = np.meshgrid(a.estimates, b.estimates)
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return math.nan
    return float(((x > y) + 0.5 * (x == y))[keep].mean())


def run_variance_share(runs: Runs) -> float:
    """Share of the variance of one run's score that comes from training randomness: the between-run variance
    over (it + the test-sampling variance of a run, the mean over runs of its patient-bootstrap variance)."""
    if len(runs.keys) < 2:
        return math.nan
    with _quiet():
        between = float(np.nanvar(runs.estimates, ddof=1))
        within = float(np.nanmean(np.nanvar(runs.draws, axis=1, ddof=1)))
    total = between + within
    return between / total if total > 0 else math.nan


def hanley_mcneil_se(auroc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUROC on `positives` + `negatives` samples (Hanley & McNeil 1982)."""
    if positives < 1 or negatives < 1 or not np.isfinite(auroc):
        return math.nan
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    variance = (auroc * (1 - auroc) + (positives - 1) * (q1 - auroc ** 2) + (negatives - 1) * (q2 - auroc ** 2))
    return math.sqrt(max(variance, 0.0) / (positives * negatives))


def detectable_difference(standard_error: float, alpha: float = 0.05) -> float:
    """The smallest difference between two backbones a two-sided test at `alpha` detects with 80 % power, their
    errors taken as independent and equal (sqrt 2 x one model's standard error): a conservative bound, since
    paired comparisons on one test set correlate."""
    from scipy import stats

    return float((stats.norm.ppf(1 - alpha / 2) + Z_80_POWER) * math.sqrt(2) * standard_error)

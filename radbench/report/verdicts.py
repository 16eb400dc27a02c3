"""Intervals and comparisons that include training randomness, not only the sampling of test patients.

A backbone's score on a dataset x protocol is the mean over its R runs (seeds x repeated draws). Every run is
scored on the same B patient resamples, so `draws[r, b]` is run r's metric under resample b. Write run r's score
as truth + u_r + e_r: u_r its training randomness (variance s_u^2), e_r its test-sampling error, which splits into a
part every run shares (the same hard patients; variance t_sh^2) and a part of its own (t_own^2). The run mean's
variance is then

    (s_u^2 + t_own^2) / R + t_sh^2.

The spread of the R run scores, s^2, estimates s_u^2 + t_own^2 without bias and is never reduced: the run part is
s^2 / R, with R - 1 degrees of freedom. The shared test part comes from the patient bootstrap: the variance of the
run mean under resampling (t_sh^2 + t_own^2 / R) less each run's own bootstrap spread around that mean divided by R
(both measured from B resamples, so precise). The uncertainty of s^2 itself is carried exactly rather than by an
approximate degrees-of-freedom count: the mean's distribution is the fiducial (Behrens-Fisher) one,

    mean + sqrt(t_sh^2 + (s^2 / R) (R - 1) / chi^2_{R-1}) Z,

Student's t_{R-1} where the run part dominates, the patient bootstrap where the test part does.

Chosen by simulation with a known truth (report/simulation.py; benchmarks/verdict_simulation.py; 300 test patients,
AUROC 0.80, run SD 0.03): the earlier form subtracted the test-sampling noise from s^2 and clipped at 0, which at
3 runs removed the run part in about a quarter of studies and called equal backbones different in 8 % of them; a
Welch-Satterthwaite t on the same two parts held 5 % but covered only 92 % at 3 runs (its degrees of freedom are
over-estimated exactly when s^2 comes out small); the fiducial form holds at most 5 % and covers 95-97 % at 3 to 6
runs, with the same power at 5 and 6 runs (tests/test_verdicts.py).

- the *two-level* interval: percentiles of B draws of that distribution, the test part keeping the shape of the
  patient bootstrap (scaled to the shared part), the run part normal with a chi^2-drawn variance;
- comparisons pair runs where they pair (the same seed and repeat in both backbones: the same few-shot draw, the
  same data order) and take the same patient resamples, so differences in the test set cancel: the same
  decomposition on the per-run differences, p = P(|W| >= |mean|) integrated over the chi^2 (a run-aware paired
  test); where runs do not pair, each side's run part with its own chi^2 and the difference's shared test part;
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
    def too_few(self) -> bool:
        """Runs differ but are too few to estimate their spread: with 2, Student's t on 1 degree of freedom fills
        [0, 1]; the interval then covers the test patients only and says so."""
        return self.varies and len(self.keys) < MIN_RUNS

    @property
    def interval_kind(self) -> str:
        if self.too_few:
            return (f"test patients only ({len(self.keys)} runs: too few to estimate run-to-run spread; run "
                    f"≥ {MIN_RUNS} seeds)")
        if self.varies:
            return INTERVAL_ALL
        return INTERVAL_SAME if len(self.keys) > 1 else INTERVAL_TEST


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(values, axis=axis)


@dataclass(frozen=True)
class RunMean:
    """A mean over runs (or a difference of two) with its variance in two parts (see the module's text)."""

    mean: float
    runs: tuple[tuple[float, int], ...]  # per side (paired: one): (s^2 / R, R - 1)
    test_part: float  # the test-sampling variance the runs share
    test_shape: np.ndarray  # (B,) the patient bootstrap of the run mean, centred: the test part's shape

    @property
    def variance(self) -> float:
        return sum(part for part, _ in self.runs) + self.test_part

    def draws(self, seed: int = 0) -> np.ndarray:
        """(B,) draws of the mean's fiducial distribution: the test part with the bootstrap's shape, plus a normal
        run part whose variance is each side's s^2 / R times (R - 1) / chi^2_{R-1}."""
        spread = float(np.nanvar(self.test_shape)) if np.isfinite(self.test_shape).sum() > 1 else 0.0
        test = self.test_shape * math.sqrt(self.test_part / spread) if spread > 0 else np.zeros_like(self.test_shape)
        rng = np.random.default_rng([seed, 7, len(self.test_shape)])
        run_variance = np.zeros(len(test))
        for part, df in self.runs:
            run_variance += part * df / rng.chisquare(df, len(test))
        return self.mean + test + np.sqrt(run_variance) * rng.standard_normal(len(test))

    def p_value(self) -> float:
        """Two-sided p of a zero mean: P(|W| >= |mean|) under the fiducial distribution, integrated over each
        side's chi^2 on an even grid of its quantiles (no Monte Carlo error)."""
        from scipy import stats

        if not np.isfinite(self.mean):
            return math.nan
        if not self.variance > 0:
            return 1.0 if self.mean == 0 else 0.0
        variance = np.array([self.test_part])
        for part, df in self.runs:
            points = 2000 if len(self.runs) == 1 else 300
            grid = stats.chi2.ppf((np.arange(points) + 0.5) / points, df)
            variance = np.add.outer(variance, part * df / grid).ravel()
        return float(np.mean(2 * stats.norm.sf(abs(self.mean) / np.sqrt(variance))))


def _parts(draws: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """(the run mean under each patient resample, s^2 / R, each run's own test noise / R, R) over the finite runs."""
    finite = np.isfinite(estimates)
    draws, estimates = draws[finite], estimates[finite]
    count = len(estimates)
    with _quiet():
        fixed = np.nanmean(draws, axis=0) if count else np.full(draws.shape[1], np.nan)
        if count < 2:
            return fixed, 0.0, 0.0, count
        spread = float(np.var(estimates, ddof=1))
        own = float(np.nanmean(np.nanvar(draws - fixed, axis=1, ddof=1))) * count / (count - 1)
    return fixed, spread / count, (own if np.isfinite(own) else 0.0) / count, count


def _run_mean(sides: list[tuple[np.ndarray, float, float, int]], fixed: np.ndarray, mean: float) -> RunMean:
    """Combine sides (one: a run mean or paired differences; two: an unpaired difference) whose run means under
    each patient resample combine to `fixed`."""
    with _quiet():
        spread = float(np.nanvar(fixed, ddof=1)) if np.isfinite(fixed).sum() > 1 else 0.0
        centre = float(np.nanmean(fixed)) if np.isfinite(fixed).any() else 0.0
    test_part = max(0.0, spread - sum(side[2] for side in sides))
    runs = tuple((side[1], side[3] - 1) for side in sides if side[3] > 1 and side[1] > 0)
    return RunMean(mean, runs, test_part, fixed - centre)


def run_mean(runs: Runs) -> RunMean:
    """One backbone's mean over its runs, with both sources of variance."""
    with _quiet():
        mean = float(np.nanmean(runs.estimates)) if np.isfinite(runs.estimates).any() else math.nan
    side = _parts(runs.draws, runs.estimates)
    return _run_mean([side], side[0], mean)


def run_difference(a: Runs, b: Runs) -> RunMean:
    """mean(a) - mean(b): runs of the same (seed, repeat) paired where both have the same set of them (their
    per-run differences take the place of runs), each side's runs on their own otherwise; the same patient
    resamples on both sides, so the test set's shared part cancels."""
    if paired(a, b):
        order_b = [b.keys.index(k) for k in a.keys]
        gap = a.draws - b.draws[order_b]
        estimates = a.estimates - b.estimates[order_b]
        side = _parts(gap, estimates)
        with _quiet():
            mean = float(np.nanmean(estimates)) if np.isfinite(estimates).any() else math.nan
        return _run_mean([side], side[0], mean)
    first, second = _parts(a.draws, a.estimates), _parts(b.draws, b.estimates)
    with _quiet():
        mean = float(np.nanmean(a.estimates) - np.nanmean(b.estimates))
    return _run_mean([first, second], first[0] - second[0], mean)


def paired(a: Runs, b: Runs) -> bool:
    """Both backbones ran the same (seed, repeat) pairs, at least two of them."""
    return len(a.keys) >= 2 and sorted(a.keys) == sorted(b.keys) and len(set(a.keys)) == len(a.keys)


def two_level_draws(runs: Runs, seed: int = 0) -> np.ndarray:
    """(B,) draws of the run mean: both sources of variance where runs differ, the patient bootstrap otherwise;
    percentile intervals at any level (interval(draws, level))."""
    return run_mean(runs).draws(seed) if runs.varies and not runs.too_few else runs.test_draws


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def paired_difference(a: Runs, b: Runs, seed: int = 0) -> np.ndarray:
    """(B,) draws of mean(a) - mean(b) (run_difference's decomposition), for its interval."""
    return run_difference(a, b).draws(seed)


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
    """Share of the variance of one run's score that comes from training randomness: s_u^2 (the spread of the run
    scores less each run's own test noise, at least 0) over s_u^2 + the test-sampling variance of one run (the
    mean over runs of its patient-bootstrap variance)."""
    fixed, spread, own, count = _parts(runs.draws, runs.estimates)
    if count < 2:
        return math.nan
    training = max(0.0, (spread - own) * count)
    with _quiet():
        sampling = float(np.nanmean(np.nanvar(runs.draws[np.isfinite(runs.estimates)], axis=1, ddof=1)))
    total = training + sampling
    return training / total if total > 0 else math.nan


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

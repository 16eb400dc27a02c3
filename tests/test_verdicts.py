"""Verdicts a radiology reader can trust: radbench's DeLong against pROC's published values on its aSAH data, and
simulated studies with a known truth for the run-aware comparisons and the two-level intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from radbench.report.stats import delong, delong_interval, patient_weights, weighted_auroc
from radbench.report.verdicts import (
    INTERVAL_ALL,
    Runs,
    detectable_difference,
    hanley_mcneil_se,
    interval,
    two_level_draws,
)


@pytest.fixture(scope="module")
def asah(shared_data):
    table = pd.read_csv(shared_data / "stats" / "aSAH.csv")
    return (table.outcome == "Poor").to_numpy().astype(int), table  # pROC: controls Good, cases Poor


def test_delong_test_equals_pROC_on_aSAH(asah):
    """pROC tests/testthat/test-roc.test.R: roc.test(r.wfns, r.s100b) etc. with defaults (DeLong, paired)."""
    y, table = asah
    for a, b, z, p in (("wfns", "s100b", 2.20898359144091, 0.0271757822291882),
                       ("wfns", "ndka", 2.79777591868904, 0.00514557970691098),
                       ("ndka", "s100b", -1.39077002573558, 0.164295175223054)):
        difference, variance, p_value = delong(y, table[a].to_numpy(float), table[b].to_numpy(float))
        assert difference / np.sqrt(variance) == pytest.approx(z, rel=1e-9)
        assert p_value == pytest.approx(p, rel=1e-9)


def test_delong_interval_equals_pROC_ci_auc_on_aSAH(asah):
    """pROC tests/testthat/test-ci.auc.R: ci.auc(r.ndka) = 0.501244999271703, 0.611957994579946, 0.722670989888189."""
    y, table = asah
    low, auroc, high = delong_interval(y, table.ndka.to_numpy(float))
    np.testing.assert_allclose([low, auroc, high], [0.501244999271703, 0.611957994579946, 0.722670989888189],
                               rtol=1e-9)


def test_operating_points_and_youden_equal_pROC_coords_on_aSAH(asah):
    """pROC tests/testthat/helper-coords-expected.R (coords(r.s100b, "all", ret="all")): rows at thresholds 0.205
    ("best", the highest Youden's J) and 0.055, and the highest sensitivity / specificity at 90 % and 95 % of the
    other over all its rows."""
    from radbench.metrics.clinical import _operating_points, at_threshold, youden_threshold

    y, table = asah
    s = table.s100b.to_numpy(float)
    for threshold, (sensitivity, specificity, ppv, npv) in (
            (0.205, (26 / 41, 58 / 72, 0.65, 58 / 73)), (0.055, (40 / 41, 8 / 72, 40 / 104, 8 / 9))):
        row = at_threshold(y, s, threshold)
        np.testing.assert_allclose([row["sensitivity@youden"], row["specificity@youden"], row["ppv@youden"],
                                    row["npv@youden"]], [sensitivity, specificity, ppv, npv], rtol=1e-12)
    assert at_threshold(y, s, youden_threshold(y, s)) == at_threshold(y, s, 0.205)  # same cut as pROC's "best"
    points = _operating_points(y, s)
    np.testing.assert_allclose([points["sens@spec90"], points["spec@sens90"], points["sens@spec95"],
                                points["spec@sens95"]], [16 / 41, 16 / 72, 14 / 41, 10 / 72], rtol=1e-12)


def _study(rng, gap: float, run_sd: float, runs: int = 5, n: int = 300, shared: float = 0.6, resamples: int = 300):
    """Two backbones scored by R runs each on one test set: run r of a backbone separates the classes by
    d ~ N(d0 (+ gap for the first), run_sd); part of each sample's noise is shared by every run (hard images)."""
    y = (rng.random(n) < 0.4).astype(int)
    common = rng.normal(size=n)
    weights = patient_weights(np.arange(n), resamples, int(rng.integers(1 << 30)))
    entries = []
    for name, d0 in (("a", 1.2 + gap), ("b", 1.2)):
        separations = rng.normal(d0, run_sd, runs)
        scores = [d * y + shared * common + np.sqrt(1 - shared ** 2) * rng.normal(size=n) for d in separations]
        entries.append(Runs(name, [(r, 0) for r in range(runs)],
                            np.array([weighted_auroc(y, s, np.ones((1, n)))[0] for s in scores]),
                            np.stack([weighted_auroc(y, s, weights) for s in scores]),
                            [(tuple(range(n)), y, s) for s in scores], identical=False))
    return entries


def _verdicts(entries, seed):
    """(run-aware verdict significant, today's test-patient-only verdict significant) for a versus b."""
    from radbench.report.leaderboard import _rank

    rows = {row[0]: row for row in _rank("d", "p", "auroc", entries, 0.05, seed)}
    worse = next(name for name, row in rows.items() if row[12] == 2)
    run_aware = rows[worse][13]
    a, b = entries
    old_p = delong(a.binary[0][1], np.stack([r[2] for r in a.binary]), np.stack([r[2] for r in b.binary]))[2]
    return run_aware, old_p < 0.05


def test_equal_backbones_with_large_run_spread_are_rarely_called_different():
    rng = np.random.default_rng(20)
    outcomes = [_verdicts(_study(rng, gap=0.0, run_sd=0.35), seed) for seed in range(200)]
    run_aware = np.mean([o[0] for o in outcomes])
    test_only = np.mean([o[1] for o in outcomes])
    assert run_aware <= 0.05, run_aware
    assert test_only > 0.2, test_only  # what the test-patients-only verdict claimed in the same studies


def test_a_real_difference_with_small_run_spread_is_detected():
    # a separation gap of 0.3 is about 0.05 AUROC here (0.80 vs 0.75); runs vary little
    rng = np.random.default_rng(21)
    gap_auroc = stats.norm.cdf(1.5 / np.sqrt(2)) - stats.norm.cdf(1.2 / np.sqrt(2))
    assert gap_auroc == pytest.approx(0.05, abs=0.01)
    detected = np.mean([_verdicts(_study(rng, gap=0.3, run_sd=0.03, n=600), seed)[0] for seed in range(200)])
    assert detected >= 0.8, detected


SIMULATIONS = 1000  # the binomial error of a coverage over 1000 is 0.7 % at 95 %: the window is about 3 of them


@pytest.mark.parametrize("level,low,high", [(0.95, 0.93, 0.97), (0.90, 0.88, 0.92)])
def test_intervals_cover_the_truth_as_often_as_they_say(level, low, high):
    """1000 simulated test sets with a known AUROC: the test-patient interval of one fixed model, and the two-level
    interval of 5 runs whose separations vary (truth: the expected AUROC over runs)."""
    rng = np.random.default_rng(22 + int(level * 100))
    n, d0, run_sd = 300, 1.2, 0.3
    one_truth = stats.norm.cdf(d0 / np.sqrt(2))
    runs_truth = stats.norm.cdf(rng.normal(d0, run_sd, 400_000) / np.sqrt(2)).mean()
    covered = {"one": 0, "runs": 0}

    def at_level(draws):  # the 95 % case goes through the defaults the leaderboard uses
        return interval(draws) if level == 0.95 else interval(draws, level)

    for trial in range(SIMULATIONS):
        y = (rng.random(n) < 0.4).astype(int)
        common = rng.normal(size=n)
        weights = patient_weights(np.arange(n), 400, trial)
        fixed = d0 * y + rng.normal(size=n)
        lo, hi = at_level(weighted_auroc(y, fixed, weights))
        covered["one"] += lo <= one_truth <= hi
        scores = [d * y + 0.5 * common + np.sqrt(0.75) * rng.normal(size=n) for d in rng.normal(d0, run_sd, 5)]
        runs = Runs("a", [(r, 0) for r in range(5)], np.array([weighted_auroc(y, s, np.ones((1, n)))[0]
                                                                for s in scores]),
                    np.stack([weighted_auroc(y, s, weights) for s in scores]), identical=False)
        assert runs.interval_kind == INTERVAL_ALL
        lo, hi = at_level(two_level_draws(runs, trial) if level == 0.95 else two_level_draws(runs, trial, level))
        covered["runs"] += lo <= runs_truth <= hi
    for kind, count in covered.items():
        assert low <= count / SIMULATIONS <= high, (kind, count / SIMULATIONS)


def test_detectable_difference_follows_hanley_mcneil():
    se = hanley_mcneil_se(0.8, 50, 150)
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    assert se == pytest.approx(np.sqrt((0.16 + 49 * (q1 - 0.64) + 149 * (q2 - 0.64)) / (50 * 150)))
    assert detectable_difference(se) == pytest.approx((1.959964 + 0.841621) * np.sqrt(2) * se, rel=1e-5)
    assert detectable_difference(hanley_mcneil_se(0.8, 5, 15)) > 3 * detectable_difference(se)  # small test sets

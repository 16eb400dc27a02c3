"""Simulated studies with a known truth, for checking the report's verdicts and intervals the way a user's study
would exercise them (tests/test_verdicts.py, benchmarks/verdict_simulation.py).

A study: backbones scored by R runs each (seeds) on one binary test set of `patients` patients, one image each.
Run r of a backbone separates the classes by d_r = d0 + run_sd * (rho * z_r + sqrt(1 - rho^2) * z_{r, backbone}):
z_r is shared by every backbone's run of seed r (the same few-shot draw, the same data order), so rho > 0 makes
pairing runs by seed worth something. Scores are d_r * y + shared * h + sqrt(1 - shared^2) * e: h is the same for
every run and backbone (hard images), e is each run's own. A run's population AUROC is Phi(d_r / sqrt(2)), so the
truth of a backbone is E[Phi(d / sqrt(2))] over its runs, and its run-to-run SD in AUROC units is set directly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from radbench.report.resamples import Resamples, auroc, patient_resamples
from radbench.report.verdicts import Runs


@dataclass(frozen=True)
class Design:
    runs: int = 3
    patients: int = 300
    prevalence: float = 0.4
    auroc: float = 0.80  # the expected AUROC of the second backbone (the first adds `gap`)
    gap: float = 0.0  # the first backbone's expected AUROC minus the second's
    run_sd: float = 0.03  # run-to-run SD of a run's population AUROC
    rho: float = 0.0  # correlation of two backbones' runs of the same seed
    shared: float = 0.6  # share of a sample's noise common to every run (hard images)
    resamples: int = 400


def separation(auroc_value: float) -> float:
    """The class separation d whose AUROC is `auroc_value` (unit-variance normal scores: Phi(d / sqrt 2))."""
    return math.sqrt(2) * stats.norm.ppf(auroc_value)


def truth(design: Design, backbone: int = 1) -> float:
    """E[Phi(d / sqrt 2)] over runs of one backbone (0: the first, with the gap; 1: the second): Gauss-Hermite."""
    target = design.auroc + (design.gap if backbone == 0 else 0.0)
    centre, sd = separation(target), design.run_sd / _slope(target)
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    return float(np.sum(weights * stats.norm.cdf((centre + sd * nodes) / math.sqrt(2))) / math.sqrt(2 * math.pi))


def _slope(auroc_value: float) -> float:
    """dAUROC / dd at `auroc_value`: converts a run SD in AUROC units to separation units."""
    return float(stats.norm.pdf(stats.norm.ppf(auroc_value)) / math.sqrt(2))


def study(design: Design, rng: np.random.Generator) -> list[Runs]:
    """Two backbones' Runs on one simulated test set, scored on the same patient resamples."""
    n = design.patients
    y = (rng.random(n) < design.prevalence).astype(np.int64)
    while y.min() == y.max():
        y = (rng.random(n) < design.prevalence).astype(np.int64)
    hard = rng.normal(size=n)
    resamples = patient_resamples(np.arange(n), design.resamples, int(rng.integers(1 << 30)))
    whole = Resamples(np.ones((1, n)), np.arange(n, dtype=np.int64))  # the test set as it is
    seed_effects = rng.normal(size=design.runs)
    entries = []
    for index in range(2):
        target = design.auroc + (design.gap if index == 0 else 0.0)
        own = rng.normal(size=design.runs)
        effects = design.rho * seed_effects + math.sqrt(1 - design.rho ** 2) * own
        separations = separation(target) + design.run_sd / _slope(target) * effects
        estimates, draws = [], []
        for d in separations:
            scores = d * y + design.shared * hard + math.sqrt(1 - design.shared ** 2) * rng.normal(size=n)
            estimates.append(auroc(y, scores, whole)[0])
            draws.append(auroc(y, scores, resamples))
        entries.append(Runs("ab"[index], [(r, 0) for r in range(design.runs)], np.array(estimates),
                            np.stack(draws), identical=False))
    return entries


def verdicts(design: Design, studies: int, seed: int) -> dict[str, float]:
    """Over `studies` simulated studies, through the leaderboard's own ranking: the share in which the worse-ranked
    backbone was called significantly worse, in which it was the truly worse one (power when gap > 0), and the
    share of 95 % intervals (both backbones) that cover their truth."""
    from radbench.report.leaderboard import COLUMNS, _rank

    rng = np.random.default_rng(seed)
    truths = {"a": truth(design, 0), "b": truth(design, 1)}
    called = called_right = covered = 0
    for index in range(studies):
        rows = _rank("simulated", "p", "auroc", study(design, rng), 0.05, index)
        for row in (dict(zip(COLUMNS, values)) for values in rows):  # by name: columns may be added
            covered += row["ci_low"] <= truths[row["backbone"]] <= row["ci_high"]
            if row["rank"] == 2 and row["significantly_worse_than_best"]:
                called += 1
                called_right += row["backbone"] == "b"
    return {"significant": called / studies, "significant_right_way": called_right / studies,
            "coverage": covered / (2 * studies)}

"""The leaderboard: per backbone x dataset x protocol x metric, the mean over runs (seeds x repeated draws), its
95 % interval over runs and test patients (or test patients alone, labelled so, where runs are identical or
single), the rank among backbones, and a verdict against the best built on the same sources of variance
(report/verdicts.py): a run-aware t test where runs differ (paired by seed and draw), "too few runs to tell" under 3 of them,
DeLong's test (binary AUROC) or a patient-paired bootstrap where every run gave the same predictions; Holm-corrected
within the dataset x protocol x metric. Beside it: P(best > this) over paired runs, the share of a run's variance
that training randomness causes, the test split's size and the smallest difference it can detect at 80 % power.

Every job of a dataset is scored on the same patient resamples, so differences between backbones are paired."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.metrics.retrieval import is_retrieval_metric
from radbench.report.resamples import Resamples, patient_resamples
from radbench.report.stat_cache import LEADERBOARD, StatCache, digest
from radbench.report.stats import bootstrap_p_value, delong, holm, metrics_under_weights
from radbench.report.verdicts import (
    MIN_RUNS,
    Runs,
    detectable_difference,
    hanley_mcneil_se,
    interval,
    p_better,
    paired,
    run_difference,
    run_variance_share,
    two_level_draws,
)
from radbench.results.store import ResultsStore
from radbench.results.tables import KEYS, settings

CASE_METRICS = ("dice", "iou", "dice_jaccard_mean")  # higher is better, as ranking assumes (HD95 stays per case)


def ranked_case_metric(name: str) -> bool:
    """A per-case metric the leaderboard ranks: segmentation's overlaps, retrieval's precision@k and mAP."""
    return name in CASE_METRICS or is_retrieval_metric(name)


COLUMNS = ["backbone", "dataset", "protocol", "metric", "mean", "std", "runs", "seeds", "ci_low", "ci_high", "interval",
           "test_ci_low", "test_ci_high", "rank", "significantly_worse_than_best", "p_vs_best", "test", "verdict",
           "p_best_better", "run_variance_share", "test_size", "detectable_difference", "contains_chance"]


def leaderboard(store: ResultsStore, resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    jobs = store.jobs()
    cases = store.sample_metrics()
    cases = cases[cases.metric.map(ranked_case_metric).astype(bool)]
    with_cases = set(cases.job)
    unusable = store.unusable_predictions()  # the report names them once; they are left out here
    jobs = jobs[~jobs.key.isin(unusable)].reset_index(drop=True)
    jobs = jobs[~jobs.protocol.str.contains("@corrupt:", regex=False)].reset_index(drop=True)  # their own section
    if jobs.empty:
        return pd.DataFrame(columns=COLUMNS)
    jobs["job"] = jobs["key"]
    setting = settings(jobs[["job", *KEYS, "config"]])
    jobs["protocol"] = [f"{p} ({s})" if s else p for p, s in zip(jobs.protocol, setting)]
    rows = []
    cache = StatCache(store, LEADERBOARD, resamples, seed)
    for dataset, dataset_jobs in jobs.groupby("dataset"):
        scored = {}  # job key -> (estimates, resampled metrics, binary data, what identifies its predictions, ...)
        weights_by_samples: dict[tuple, Resamples] = {}
        for job in dataset_jobs.itertuples():
            if job.key in with_cases:  # segmentation, retrieval: the mean over test cases of per-case metrics
                rows_of_job = cases[cases.job == job.key]
                per_case = rows_of_job.pivot(index="sample_id", columns="metric", values="value")
                samples = tuple(per_case.index)
                patients = _case_patients(rows_of_job, per_case.index)
                if samples not in weights_by_samples:
                    weights_by_samples[samples] = patient_resamples(patients, resamples, seed)
                estimates, draws = _case_means(per_case, weights_by_samples[samples])
                scored[job.key] = (estimates, draws, None, digest(per_case.to_numpy()), len(set(patients)), None,
                                   None)
                continue
            task = Task(job.task)
            hit = cache.get(job.key)
            if hit and task is not Task.BINARY:  # binary: DeLong needs the scores themselves
                scored[job.key] = (hit[0], hit[1], None, *_split_facts(hit[2]))
                continue
            _, sample_ids, targets, scores = store.predictions(job.key)
            patients = np.array(store.patient_ids(job.key))
            samples = tuple(sample_ids)
            binary = (samples, targets.argmax(1), scores[:, 1]) if task is Task.BINARY else None
            if hit:
                scored[job.key] = (hit[0], hit[1], binary, *_split_facts(hit[2]))
                continue
            if samples not in weights_by_samples:  # one set of resamples per test split: paired comparisons
                weights_by_samples[samples] = patient_resamples(patients, resamples, seed)
            estimate = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))
            estimates = {k: float(v[0]) for k, v in estimate.items()}
            draws = metrics_under_weights(task, targets, scores, weights_by_samples[samples])
            facts = {"identity": digest(scores), "patients": len(set(patients)),
                     "positives": _positives(task, targets), "fewest": _fewest(targets)}
            scored[job.key] = (estimates, draws, binary, *_split_facts(facts))
            cache.put(job.key, estimates, draws, **facts)
        for protocol, protocol_jobs in dataset_jobs.groupby("protocol"):
            metrics = sorted({m for key in protocol_jobs.key for m in scored[key][0]})
            for metric in metrics:
                entries = [_runs(backbone, group, scored, metric) for backbone, group in protocol_jobs.groupby("backbone")]
                first = scored[protocol_jobs.key.iloc[0]]  # size, (positives, negatives), the fewest of a class
                rows += _rank(dataset, protocol, metric, entries, alpha, seed, first[4], first[5], first[6])
    cache.save()
    return pd.DataFrame(rows, columns=COLUMNS)


def _split_facts(facts: dict) -> tuple:
    """(what identifies the predictions, patients, (positives, negatives) of a binary split, the fewest of a class)
    as a job's cached header holds them."""
    positives = tuple(facts["positives"]) if facts["positives"] is not None else None
    return facts["identity"], facts["patients"], positives, tuple(facts["fewest"])


def _fewest(targets: np.ndarray) -> tuple[int, int]:
    """(positives, negatives) of the class with the fewest of either among the known labels (one-vs-rest): an
    AUROC over its classes is no steadier than its least represented one."""
    known = ~np.isnan(targets)
    positives = np.where(known, targets, 0).sum(0).astype(int)
    negatives = known.sum(0) - positives
    weakest = int(np.argmin(np.minimum(positives, negatives)))
    return int(positives[weakest]), int(negatives[weakest])


def _positives(task: Task, targets: np.ndarray) -> tuple[int, int] | None:
    """(positives, negatives) of a binary test split (for the AUROC's detectable difference), else None."""
    if task is not Task.BINARY:
        return None
    positives = int(targets[:, 1].sum())
    return positives, len(targets) - positives


def _runs(backbone: str, group: pd.DataFrame, scored: dict, metric: str) -> Runs:
    keys = group.key.tolist()
    return Runs(backbone, list(zip(group.seed.astype(int), group.repeat.astype(int))),
                np.array([scored[k][0][metric] for k in keys], dtype=float),
                np.stack([np.asarray(scored[k][1][metric], dtype=float) for k in keys]),
                [scored[k][2] for k in keys], identical=len({scored[k][3] for k in keys}) == 1)


def _case_patients(rows: pd.DataFrame, samples: pd.Index) -> np.ndarray:
    """The patient of each case (in `samples` order) where the store kept it (retrieval queries), else each case its
    own patient (segmentation volumes, older stores)."""
    kept = rows.dropna(subset=["patient_id"]).drop_duplicates("sample_id").set_index("sample_id").patient_id
    if len(kept) == len(samples):
        return kept.reindex(samples).astype(str).to_numpy()
    return np.asarray(samples, dtype=str)


def _case_means(per_case: pd.DataFrame, resamples: Resamples) -> tuple[dict, dict]:
    """Mean of each per-case metric, and its value under every resample's case weights (cases without a value,
    e.g. HD95 of an empty mask, are left out as the stored mean leaves them out)."""
    estimates, draws = {}, {}
    weights = resamples.dense()
    for metric in per_case.columns:
        values = per_case[metric].to_numpy(dtype=float)
        known = ~np.isnan(values)
        estimates[metric] = float(values[known].mean()) if known.any() else np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            draws[metric] = (weights[:, known] @ values[known]) / weights[:, known].sum(1)
    return estimates, draws


def _rank(dataset: str, protocol: str, metric: str, entries: list[Runs], alpha: float, seed: int = 0,
          test_size: int = 0, balance: tuple[int, int] | None = None,
          fewest: tuple[int, int] | None = None) -> list[list]:
    means = [float(np.nanmean(e.estimates)) if np.isfinite(e.estimates).any() else np.nan for e in entries]
    order = np.argsort([-m if not np.isnan(m) else np.inf for m in means], kind="mergesort")
    ranks = np.empty(len(entries), dtype=int)
    ranks[order] = np.arange(1, len(entries) + 1)
    best = int(order[0])
    small = too_small(test_size, fewest if metric.split("/")[0] == "auroc" else None)
    tests = ["" if i == best else TOO_SMALL if small else _test(entries[best], entry, metric)
             for i, entry in enumerate(entries)]
    p_values = [np.nan if i == best else _p_value(entries[best], entry, tests[i], seed)
                for i, entry in enumerate(entries)]
    adjusted = holm(p_values)
    detectable = _detectable(entries[best], means[best], metric, balance)
    rows = []
    low_bound, high_bound = (-1.0, 1.0) if metric == "kappa" else (0.0, 1.0)  # every ranked metric is bounded
    for index, entry in enumerate(entries):
        low, high = interval(np.clip(two_level_draws(entry, seed), low_bound, high_bound))
        test_low, test_high = interval(entry.test_draws)
        worse = bool(index != best and not np.isnan(adjusted[index]) and adjusted[index] < alpha)
        std = float(np.nanstd(entry.estimates, ddof=1)) if np.isfinite(entry.estimates).sum() > 1 else np.nan
        verdict = ONE_BACKBONE if len(entries) == 1 else "best" if index == best else \
            "too few runs to tell" if tests[index] == TOO_FEW else \
            f"test set too small to tell ({small})" if tests[index] == TOO_SMALL else \
            "significantly worse" if worse else "not significantly different"
        rows.append([entry.backbone, dataset, protocol, metric, means[index], std, len(entry.keys),
                     len({seed for seed, _ in entry.keys}), low, high,
                     entry.interval_kind, test_low, test_high, int(ranks[index]), worse, adjusted[index],
                     tests[index], verdict, np.nan if index == best else p_better(entries[best], entry),
                     run_variance_share(entry), test_size, detectable,
                     bool(metric == "auroc" and low <= CHANCE_AUROC <= high)])
    return rows


TOO_FEW = "too few runs"
ONE_BACKBONE = "no comparison (one backbone)"  # nothing was compared: no "best"
RUN_AWARE_PAIRED = "run-aware paired"  # runs x test patients, runs paired by seed and draw (report/verdicts.py)
RUN_AWARE_UNPAIRED = "run-aware unpaired"  # the same where the two backbones' runs do not pair
TOO_SMALL = "none: test set too small"
MIN_TEST_SIZE = 10  # patients (cases for segmentation): below it no comparison is made
MIN_PER_CLASS = 5  # positives and negatives of a binary test split, for an AUROC comparison
CHANCE_AUROC = 0.5


def too_small(test_size: int, balance: tuple[int, int] | None) -> str:
    """Why this test split is too small to compare backbones on ('' when it is not)."""
    if test_size and test_size < MIN_TEST_SIZE:
        return f"{test_size} test patients or cases, under {MIN_TEST_SIZE}"
    if balance is not None and min(balance) < MIN_PER_CLASS:
        return (f"{balance[0]} positive and {balance[1]} negative test samples in its least represented class, "
                f"under {MIN_PER_CLASS} of each")
    return ""


def _test(best: Runs, other: Runs, metric: str) -> str:
    if best.varies or other.varies:
        if min(len(best.keys), len(other.keys)) < MIN_RUNS:
            return TOO_FEW
        return RUN_AWARE_PAIRED if paired(best, other) else RUN_AWARE_UNPAIRED
    if metric == "auroc" and _same_binary_samples([best, other]):
        return "delong"
    return "paired bootstrap"


def _same_binary_samples(entries: list[Runs]) -> bool:
    runs = [run for entry in entries for run in entry.binary or [None]]
    return all(run is not None for run in runs) and len({run[0] for run in runs}) == 1


def _p_value(best: Runs, other: Runs, test: str, seed: int) -> float:
    """Two-sided p-value of best - other, by the test chosen for the pair (none where runs are too few)."""
    if test in (TOO_FEW, TOO_SMALL):
        return np.nan
    if test == "delong":
        y = best.binary[0][1]
        return delong(y, np.stack([run[2] for run in best.binary]), np.stack([run[2] for run in other.binary]))[2]
    if test in (RUN_AWARE_PAIRED, RUN_AWARE_UNPAIRED):
        return run_difference(best, other).p_value()
    return bootstrap_p_value(best.test_draws - other.test_draws)


def _detectable(best: Runs, mean: float, metric: str, balance: tuple[int, int] | None) -> float:
    """The smallest difference from the best that this test split detects at 80 % power (Hanley-McNeil for a
    binary AUROC, else the best's test-sampling standard error from the bootstrap)."""
    if metric == "auroc" and balance is not None:
        return detectable_difference(hanley_mcneil_se(mean, *balance))
    draws = best.test_draws
    draws = draws[np.isfinite(draws)]
    return detectable_difference(float(np.std(draws, ddof=1))) if len(draws) > 1 else np.nan

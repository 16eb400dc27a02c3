"""The leaderboard: per backbone x dataset x protocol x metric, the mean and std over seeds (and repeats), a 95 %
patient-level bootstrap interval of that mean, the rank among backbones, and whether it is significantly worse
than the best (DeLong's test for a binary AUROC, else a paired bootstrap on the same resamples; Holm-corrected
within the dataset x protocol x metric).

Every job of a dataset is scored on the same patient resamples, so differences between backbones are paired."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.report.stats import bootstrap_p_value, delong, holm, metrics_under_weights, patient_weights
from radbench.results.store import ResultsStore
from radbench.results.tables import KEYS, settings

CASE_METRICS = ("dice", "iou")  # higher is better, as ranking assumes (HD95 stays in the per-case tables)
COLUMNS = ["backbone", "dataset", "protocol", "metric", "mean", "std", "n_seeds", "ci_low", "ci_high", "rank",
           "significantly_worse_than_best", "p_vs_best", "test"]


def leaderboard(store: ResultsStore, resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    jobs = store.jobs()
    cases = store.sample_metrics()
    cases = cases[cases.metric.isin(CASE_METRICS)]
    with_cases = set(cases.job)
    unusable = store.unusable_predictions()  # the report names them once; they are left out here
    jobs = jobs[~jobs.key.isin(unusable)].reset_index(drop=True)
    if jobs.empty:
        return pd.DataFrame(columns=COLUMNS)
    jobs["job"] = jobs["key"]
    setting = settings(jobs[["job", *KEYS, "config"]])
    jobs["protocol"] = [f"{p} ({s})" if s else p for p, s in zip(jobs.protocol, setting)]
    rows = []
    for dataset, dataset_jobs in jobs.groupby("dataset"):
        scored = {}  # job key -> (estimates, resampled metrics)
        weights_by_samples: dict[tuple, np.ndarray] = {}
        for job in dataset_jobs.itertuples():
            if job.key in with_cases:  # segmentation: the mean over test cases of per-case Dice / IoU
                per_case = cases[cases.job == job.key].pivot(index="sample_id", columns="metric", values="value")
                samples = tuple(per_case.index)
                if samples not in weights_by_samples:
                    weights_by_samples[samples] = patient_weights(np.array(samples), resamples, seed)
                scored[job.key] = (*_case_means(per_case, weights_by_samples[samples]), None)
                continue
            _, sample_ids, targets, scores = store.predictions(job.key)
            patients = np.array(store.patient_ids(job.key))
            samples = tuple(sample_ids)
            if samples not in weights_by_samples:  # one set of resamples per test split: paired comparisons
                weights_by_samples[samples] = patient_weights(patients, resamples, seed)
            task = Task(job.task)
            estimate = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))
            binary = (samples, targets.argmax(1), scores[:, 1]) if task is Task.BINARY else None
            scored[job.key] = ({k: float(v[0]) for k, v in estimate.items()},
                               metrics_under_weights(task, targets, scores, weights_by_samples[samples]), binary)
        for protocol, protocol_jobs in dataset_jobs.groupby("protocol"):
            metrics = sorted({m for key in protocol_jobs.key for m in scored[key][0]})
            for metric in metrics:
                entries = []
                for backbone, group in protocol_jobs.groupby("backbone"):
                    values = np.array([scored[key][0][metric] for key in group.key])
                    draws = np.nanmean(np.stack([scored[key][1][metric] for key in group.key]), axis=0)
                    entries.append((backbone, values, draws, [scored[key][2] for key in group.key]))
                rows += _rank(dataset, protocol, metric, entries, alpha)
    return pd.DataFrame(rows, columns=COLUMNS)


def _case_means(per_case: pd.DataFrame, weights: np.ndarray) -> tuple[dict, dict]:
    """Mean of each per-case metric, and its value under every resample's case weights (cases without a value,
    e.g. HD95 of an empty mask, are left out as the stored mean leaves them out)."""
    estimates, draws = {}, {}
    for metric in per_case.columns:
        values = per_case[metric].to_numpy(dtype=float)
        known = ~np.isnan(values)
        estimates[metric] = float(values[known].mean()) if known.any() else np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            draws[metric] = (weights[:, known] @ values[known]) / weights[:, known].sum(1)
    return estimates, draws


def _rank(dataset: str, protocol: str, metric: str, entries: list, alpha: float) -> list[list]:
    means = [float(np.nanmean(values)) if not np.isnan(values).all() else np.nan for _, values, _, _ in entries]
    order = np.argsort([-m if not np.isnan(m) else np.inf for m in means], kind="mergesort")
    ranks = np.empty(len(entries), dtype=int)
    ranks[order] = np.arange(1, len(entries) + 1)
    best = int(order[0])
    test = "delong" if metric == "auroc" and _same_binary_samples(entries) else "paired bootstrap"
    p_values = [np.nan if index == best else _p_value(entries[best], entry, test) for index, entry in enumerate(entries)]
    adjusted = holm(p_values)
    rows = []
    for index, (backbone, values, draws, _) in enumerate(entries):
        finite = draws[~np.isnan(draws)]
        low, high = np.quantile(finite, [0.025, 0.975]) if len(finite) else (np.nan, np.nan)
        worse = bool(index != best and not np.isnan(adjusted[index]) and adjusted[index] < alpha)
        std = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else np.nan
        rows.append([backbone, dataset, protocol, metric, means[index], std, len(values), float(low), float(high),
                     int(ranks[index]), worse, adjusted[index], "" if index == best else test])
    return rows


def _same_binary_samples(entries: list) -> bool:
    runs = [run for entry in entries for run in entry[3]]
    return all(run is not None for run in runs) and len({run[0] for run in runs}) == 1


def _p_value(best: tuple, other: tuple, test: str) -> float:
    """Two-sided p-value of best - other: DeLong on the seed-averaged structural components of a binary AUROC,
    else the share of paired bootstrap resamples on the other side of zero."""
    if test == "delong":
        y = best[3][0][1]
        return delong(y, np.stack([run[2] for run in best[3]]), np.stack([run[2] for run in other[3]]))[2]
    return bootstrap_p_value(best[2] - other[2])

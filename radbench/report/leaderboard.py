"""The leaderboard: per backbone x dataset x protocol x metric, the mean and std over seeds (and repeats), a 95 %
patient-level bootstrap interval of that mean, the rank among backbones, and whether it is significantly worse
than the best (paired bootstrap on the same resamples, Holm-corrected within the dataset x protocol x metric).

Every job of a dataset is scored on the same patient resamples, so differences between backbones are paired."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.report.stats import holm, metrics_under_weights, patient_weights
from radbench.results.store import ResultsStore
from radbench.results.tables import KEYS, settings

COLUMNS = ["backbone", "dataset", "protocol", "metric", "mean", "std", "n_seeds", "ci_low", "ci_high", "rank",
           "significantly_worse_than_best"]


def leaderboard(store: ResultsStore, resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    jobs = store.jobs()
    jobs = jobs[[store.has_predictions(key) for key in jobs.key]].reset_index(drop=True)
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
            _, sample_ids, targets, scores = store.predictions(job.key)
            patients = np.array(store.patient_ids(job.key))
            samples = tuple(sample_ids)
            if samples not in weights_by_samples:  # one set of resamples per test split: paired comparisons
                weights_by_samples[samples] = patient_weights(patients, resamples, seed)
            task = Task(job.task)
            estimate = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))
            scored[job.key] = ({k: float(v[0]) for k, v in estimate.items()},
                               metrics_under_weights(task, targets, scores, weights_by_samples[samples]))
        for protocol, protocol_jobs in dataset_jobs.groupby("protocol"):
            metrics = sorted({m for key in protocol_jobs.key for m in scored[key][0]})
            for metric in metrics:
                entries = []
                for backbone, group in protocol_jobs.groupby("backbone"):
                    values = np.array([scored[key][0][metric] for key in group.key])
                    draws = np.nanmean(np.stack([scored[key][1][metric] for key in group.key]), axis=0)
                    entries.append((backbone, values, draws))
                rows += _rank(dataset, protocol, metric, entries, alpha)
    return pd.DataFrame(rows, columns=COLUMNS)


def _rank(dataset: str, protocol: str, metric: str, entries: list, alpha: float) -> list[list]:
    means = [float(np.nanmean(values)) if not np.isnan(values).all() else np.nan for _, values, _ in entries]
    order = np.argsort([-m if not np.isnan(m) else np.inf for m in means], kind="mergesort")
    ranks = np.empty(len(entries), dtype=int)
    ranks[order] = np.arange(1, len(entries) + 1)
    best = int(order[0])
    p_values = []
    for index, (_, _, draws) in enumerate(entries):
        if index == best:
            p_values.append(np.nan)
            continue
        difference = entries[best][2] - draws
        difference = difference[~np.isnan(difference)]
        p_values.append(float(min(1.0, 2 * min((difference <= 0).mean(), (difference >= 0).mean())))
                        if len(difference) else np.nan)
    adjusted = holm(p_values)
    rows = []
    for index, (backbone, values, draws) in enumerate(entries):
        finite = draws[~np.isnan(draws)]
        low, high = np.quantile(finite, [0.025, 0.975]) if len(finite) else (np.nan, np.nan)
        worse = bool(index != best and not np.isnan(adjusted[index]) and adjusted[index] < alpha)
        std = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else np.nan
        rows.append([backbone, dataset, protocol, metric, means[index], std, len(values), float(low), float(high),
                     int(ranks[index]), worse])
    return rows

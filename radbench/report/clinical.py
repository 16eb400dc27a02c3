"""The report's operating points and calibration: per dataset x protocol x backbone, the stored per-job numbers
(metrics/clinical.py: sensitivity at fixed specificity, the val-chosen Youden threshold applied to test, Brier,
ECE) averaged over runs, each with a 95 % interval from the same two-level bootstrap as the leaderboard (runs x
test patients where runs differ; the thresholds stay the ones each job chose on val); and reliability diagrams."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.metrics.clinical import equal_mass_bins
from radbench.report.clinical_weights import clinical_under_weights
from radbench.report.resamples import Resamples, patient_resamples
from radbench.report.stat_cache import CLINICAL, StatCache, digest
from radbench.report.verdicts import Runs, interval, two_level_draws
from radbench.results.store import PER_CASE_TASKS

SHOWN = ("sens@spec90", "spec@sens90", "sensitivity@youden", "specificity@youden", "ppv@youden", "npv@youden",
         "brier", "ece", "brier@calibrated", "ece@calibrated")
RESAMPLES = 200  # fewer than the leaderboard's (said on the page): ECE holds resamples x samples x bins


def clinical_rows(store, jobs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """backbone, protocol, metric, mean, ci_low, ci_high, interval, runs — for classification jobs of one dataset
    (the points of curves left out): each metric's macro mean, and `metric/<class>` per class of a multi-label or
    multi-class task."""
    jobs = jobs[~jobs.task.isin(PER_CASE_TASKS) & ~jobs.protocol.str.contains("@")]
    rows = []
    weights_by_samples: dict[tuple, Resamples] = {}
    cache = StatCache(store, CLINICAL, RESAMPLES, seed)
    for (protocol, backbone), group in jobs.groupby(["protocol", "backbone"]):
        per_run, keys, fingerprints = [], [], set()
        for job in group.itertuples():
            hit = cache.get(job.key)
            if hit is None:
                estimate, draws, identity = _job_statistics(store, job, weights_by_samples, seed)
                cache.put(job.key, estimate, draws, identity=identity)
            else:
                estimate, draws, identity = hit[0], hit[1], hit[2]["identity"]
            per_run.append((estimate, draws))
            keys.append((int(job.seed), int(job.repeat)))
            fingerprints.add(identity)
        classes = sorted({key.split("/", 1)[1] for estimate, _ in per_run for key in estimate if "/" in key})
        for metric in [*SHOWN, *(f"{m}/{c}" for m in SHOWN for c in classes)]:
            if not all(metric in estimate for estimate, _ in per_run) or \
                    all(np.isnan(estimate[metric]) for estimate, _ in per_run):
                continue  # undefined on this test split (one label value): the job's notes say why
            runs = Runs(backbone, keys, np.array([estimate[metric] for estimate, _ in per_run]),
                        np.stack([draws[metric] for _, draws in per_run]),
                        identical=len(fingerprints) == 1)
            low, high = interval(np.clip(two_level_draws(runs, seed), 0.0, 1.0))
            finite = runs.estimates[np.isfinite(runs.estimates)]
            rows.append([backbone, protocol, metric, float(finite.mean()) if len(finite) else np.nan, low, high,
                         runs.interval_kind, len(keys)])
    cache.save()
    return pd.DataFrame(rows, columns=["backbone", "protocol", "metric", "mean", "ci_low", "ci_high", "interval",
                                       "runs"])


def _job_statistics(store, job, weights_by_samples: dict, seed: int) -> tuple[dict, dict, str]:
    """(metrics on the test split, metrics under every patient resample, what identifies the predictions)."""
    class_names, sample_ids, targets, scores = store.predictions(job.key)
    samples = tuple(sample_ids)
    if samples not in weights_by_samples:
        weights_by_samples[samples] = patient_resamples(np.array(store.patient_ids(job.key)), RESAMPLES, seed)
    details = json.loads(job.details or "{}")
    thresholds = details.get("clinical", {}).get("youden_threshold", {})
    task, names = Task(job.task), tuple(class_names)
    calibrated = _calibrated_scores(details, task, scores)
    estimate = {k: float(v[0]) for k, v in clinical_under_weights(
        task, targets, scores, names, thresholds, np.ones((1, len(targets))), calibrated).items()}
    draws = clinical_under_weights(task, targets, scores, names, thresholds, weights_by_samples[samples], calibrated)
    return estimate, draws, digest(scores)


def _calibrated_scores(details: dict, task: Task, scores: np.ndarray) -> np.ndarray | None:
    """The test scores through the job's own val-fitted map (`calibrate:`), or None."""
    from radbench.metrics.calibration import apply_calibration

    params = details.get("calibration", {})
    return apply_calibration(params, task, scores) if "method" in params and "undefined" not in params else None


def reliability_points(store, jobs: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """backbone, protocol, predicted, observed, count per equal-mass bin of the first run's predicted probability
    (the positive class; multi-label: every finding pooled)."""
    jobs = jobs[~jobs.task.isin(PER_CASE_TASKS) & ~jobs.protocol.str.contains("@")]
    first = jobs.sort_values(["seed", "repeat"]).drop_duplicates(["backbone", "protocol"])
    rows = []
    for job in first.itertuples():
        _, _, targets, scores = store.predictions(job.key)
        task = Task(job.task)
        if task is Task.BINARY:
            y, s = targets[:, 1], scores[:, 1]
        elif task is Task.MULTILABEL:
            known = ~np.isnan(targets)
            y, s = targets[known], scores[known]
        else:
            continue
        labels, scores, counts = equal_mass_bins(y, s, bins)
        rows += [[job.backbone, job.protocol, float(score / n), float(label / n), int(n)]
                 for label, score, n in zip(labels, scores, counts)]
    return pd.DataFrame(rows, columns=["backbone", "protocol", "predicted", "observed", "count"])

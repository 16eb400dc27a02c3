"""`radbench verify OUT`: every stored job's test metrics recomputed from what the store holds — classification
metrics from its stored predictions (scikit-learn, as the run computed them: the scores are stored at the precision
the metrics were computed from, so they agree exactly), segmentation's mean Dice / IoU from its per-case rows — and
every predictions row checked against its checksums. Jobs that differ or cannot be read are named."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from radbench.results.store import ResultsStore

TOLERANCE = 1e-9  # metrics are stored as REAL (float64) from the same float64 computation
CASE_METRICS = ("dice", "iou", "dice_jaccard_mean", "dice_pooled")


@dataclass(frozen=True)
class Finding:
    job: str
    backbone: str
    dataset: str
    protocol: str
    seed: int
    problem: str


def verify(store: ResultsStore, progress=None) -> tuple[int, list[Finding]]:
    """(jobs checked, what is wrong). `progress(done, total)` is called after each job."""
    import numpy as np

    from radbench.data.base import Task
    from radbench.metrics import classification_metrics
    from radbench.metrics.retrieval import is_retrieval_metric
    from radbench.metrics.segmentation import mean_over_cases
    from radbench.results.store import PER_CASE_TASKS

    jobs = store.jobs()
    stored = store.metrics("test")
    values = {(job, metric): value for job, metric, value in zip(stored.job, stored.metric, stored.value)}
    damaged = store.damaged_predictions()
    cases = store.sample_metrics()
    findings = []
    for done, job in enumerate(jobs.itertuples(), start=1):
        where = dict(job=job.key, backbone=job.backbone, dataset=job.dataset, protocol=job.protocol, seed=job.seed)
        if job.key in damaged:
            findings.append(Finding(**where, problem=damaged[job.key]))
        elif job.task in PER_CASE_TASKS:
            per_case = cases[cases.job == job.key]
            rows = [dict(zip(group.metric, group.value)) for _, group in per_case.groupby("sample_id")]
            recomputed = {k: v for k, v in mean_over_cases(rows).items()
                          if k in CASE_METRICS or is_retrieval_metric(k)} if rows else {}
            findings += _compare(where, values, recomputed, "per-case rows")
        elif store.has_predictions(job.key):
            class_names, _, targets, scores = store.predictions(job.key)
            bad = int((~np.isfinite(scores)).sum())
            if bad:  # a damaged blob of an older store (no checksums) can decode to NaN / inf
                findings.append(Finding(**where, problem=f"stored predictions hold {bad} non-finite scores"))
            else:
                recomputed, _ = classification_metrics(Task(job.task), targets, scores, tuple(class_names))
                findings += _compare(where, values, recomputed, "stored predictions")
        if progress is not None:
            progress(done, len(jobs))
    return len(jobs), findings


def _compare(where: dict, values: dict, recomputed: dict, source: str) -> list[Finding]:
    differing = []
    for metric, value in recomputed.items():
        if (where["job"], metric) not in values:
            continue
        kept = values[(where["job"], metric)]
        kept = math.nan if kept is None else float(kept)
        value = float(value)
        if math.isnan(kept) and math.isnan(value):
            continue
        if math.isnan(kept) or math.isnan(value) or abs(kept - value) > TOLERANCE:
            differing.append(f"{metric} stored {kept:.6g}, from its {source} {value:.6g}")
    if not differing:
        return []
    shown = "; ".join(differing[:4]) + (f"; and {len(differing) - 4} more" if len(differing) > 4 else "")
    return [Finding(**where, problem=f"metrics differ: {shown}")]


def as_json(findings: list[Finding]) -> str:
    return json.dumps([finding.__dict__ for finding in findings], indent=1)

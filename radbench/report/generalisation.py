"""Does the winner generalise: the statistics of the report's external, subgroup and robustness tables, all from
stored predictions (so `radbench results --predictions` recomputes every number).

- External: per backbone x protocol x external set, the in-domain metric on the matched classes, the external
  metric and the gap (external - in-domain). The two test sets hold different patients: each is resampled on its
  own patients and the gap's interval is that of the difference of the two, runs resampled too where they differ.
- Subgroups: per group of a metadata column, the metric with an interval over the group's patients and runs, its
  gap to the overall value; groups with fewer than 20 positives are shown and flagged, never named worst; the
  largest gap between two ranked groups gets an interval and a bootstrap p-value (groups resampled on their own).
- Robustness: per corruption and severity the metric (mean over runs), the mean over corruptions per severity, and
  the relative robustness: the area under metric-against-severity (severity 0 = clean) over the clean metric's
  area. Every corrupted set holds the clean test's patients: one set of resamples serves all, paired."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.report.leaderboard import _fewest, too_small
from radbench.report.resamples import Resamples, patient_resamples
from radbench.report.stats import bootstrap_p_value, metrics_under_weights
from radbench.report.verdicts import Runs, interval, two_level_draws

EXTERNAL, CORRUPTED = "@external:", "@corrupt:"
MIN_POSITIVES = 20
METRIC = "auroc"


def is_corrupted(protocol: str) -> bool:
    return CORRUPTED in protocol


def _details(job) -> dict:
    details = job.details
    return json.loads(details) if isinstance(details, str) else details


@functools.lru_cache(maxsize=4)
def _weights(patients: tuple, resamples: int, seed: int) -> Resamples:
    """One test set's patient resamples, drawn once for all its jobs (every corruption, every run, the parent)."""
    return patient_resamples(np.array(patients), resamples, seed)


def _scored(store, key: str, columns: np.ndarray | None = None, task: Task | None = None, keep=None,
            resamples: int = 1000, seed: int = 0):
    """(estimate, draws) of the metric for one job's predictions (columns / samples restricted when given)."""
    _, sample_ids, targets, scores = store.predictions(key)
    patients = np.array(store.patient_ids(key))
    if keep is not None:
        targets, scores, patients = targets[keep], scores[keep], patients[keep]
    if columns is not None:
        targets, scores = targets[:, columns], scores[:, columns]
    weights = _weights(tuple(patients), resamples, seed)
    estimate = metrics_under_weights(task, targets, scores, np.ones((1, len(targets))))[METRIC][0]
    return float(estimate), metrics_under_weights(task, targets, scores, weights)[METRIC], targets


def _combine(estimates: list[float], draws: list[np.ndarray], seed: int) -> tuple[float, np.ndarray]:
    """The mean over runs and its draws (the run part too where runs differ: report/verdicts.py). A difference of
    two such means over the same runs is combined from the per-run differences, not from the two draws."""
    runs = Runs("", [(i, 0) for i in range(len(estimates))], np.asarray(estimates, dtype=float), np.stack(draws),
                identical=len(set(np.round(estimates, 12))) == 1)
    return float(np.nanmean(estimates)), two_level_draws(runs, seed)


def _text(value: float, bounds: tuple[float, float]) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def external_rows(store, jobs: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per backbone x protocol x external set (runs pooled)."""
    by_key = jobs.set_index("key")
    groups: dict[tuple, list] = {}
    for job in jobs[jobs.protocol.str.contains(EXTERNAL, regex=False)].itertuples():
        evaluation = _details(job)["evaluation"]
        if evaluation["of_job"] not in by_key.index:
            continue
        base = job.protocol.split(EXTERNAL)[0]
        groups.setdefault((job.backbone, job.dataset, base, evaluation["dataset"]), []).append((job, evaluation))
    rows = []
    for (backbone, dataset, protocol, external), members in groups.items():
        inside, outside = ([], []), ([], [])
        for job, evaluation in members:
            parent = by_key.loc[evaluation["of_job"]]
            names = json.loads(parent.config)["dataset"]["class_names"] if isinstance(parent.config, str) else \
                parent.config["dataset"]["class_names"]
            same = evaluation["scoring"] == "same task"
            columns = None if same else np.array([names.index(c) for c in evaluation["classes"]])
            estimate, draws, _ = _scored(store, evaluation["of_job"], columns, Task(parent.task if same else
                                                                                  "multilabel"), None, resamples, seed)
            inside[0].append(estimate)
            inside[1].append(draws)
            estimate, draws, targets = _scored(store, job.key, None, Task(job.task), None, resamples, seed)
            outside[0].append(estimate)
            outside[1].append(draws)
        mean_in, draws_in = _combine(*inside, seed)
        mean_out, draws_out = _combine(*outside, seed)
        _, gap = _combine([o - i for o, i in zip(outside[0], inside[0])],
                          [o - i for o, i in zip(outside[1], inside[1])], seed)  # paired by run
        patients = len(set(store.patient_ids(members[0][0].key)))
        small = too_small(patients, _fewest(targets))
        rows.append({"backbone": backbone, "dataset": dataset, "protocol": protocol, "external": external,
                     "classes": ", ".join(members[0][1]["classes"]), "runs": len(members),
                     "external_images": len(targets), "in_domain": mean_in, "in_domain_ci": interval(draws_in),
                     "external_value": mean_out, "external_ci": interval(draws_out), "gap": mean_out - mean_in,
                     "gap_ci": interval(gap), "p_gap": np.nan if small else bootstrap_p_value(gap),
                     "too_small": small})
    return pd.DataFrame(rows)


def subgroup_rows(store, jobs: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per backbone x protocol x subgroup column x group value, on every dataset with stored subgroups
    (external rows use the external dataset's metadata)."""
    rows = []
    metadata: dict[str, pd.DataFrame] = {}
    table = jobs[~jobs.protocol.str.contains(CORRUPTED, regex=False)]
    pooled: dict[tuple, list] = {}
    for job in table.itertuples():
        details = _details(job)
        owner = details.get("evaluation", {}).get("groups_dataset", job.dataset)
        if owner not in metadata:
            metadata[owner] = store.sample_groups(owner)
        if metadata[owner].empty:
            continue
        pooled.setdefault((job.backbone, job.dataset, job.protocol, owner), []).append(job)
    for (backbone, dataset, protocol, owner), members in pooled.items():
        groups = metadata[owner]
        _, sample_ids, _, _ = store.predictions(members[0].key)
        known = groups.reindex(sample_ids)
        overall = _combine(*zip(*[_scored(store, j.key, None, Task(j.task), None, resamples, seed)[:2]
                                 for j in members]), seed)
        for column in known.columns:
            values = known[column].to_numpy()
            for value in sorted({v for v in values if isinstance(v, str)}):
                keep = values == value
                scored = [_scored(store, j.key, None, Task(j.task), keep, resamples, seed) for j in members]
                mean, draws = _combine([s[0] for s in scored], [s[1] for s in scored], seed)
                positives = _positives(Task(members[0].task), scored[0][2])
                rows.append({"backbone": backbone, "dataset": dataset, "protocol": protocol, "source": owner,
                             "column": column, "group": value, "images": int(keep.sum()), "positives": positives,
                             "value": mean, "ci": interval(draws), "gap_to_overall": mean - overall[0],
                             "flagged": positives < MIN_POSITIVES, "_draws": draws,
                             "_runs": ([s[0] for s in scored], [s[1] for s in scored])})
    return pd.DataFrame(rows)


def _positives(task: Task, targets: np.ndarray) -> int:
    """Binary: positive images; multi-class: those of the rarest class; multi-label: positive labels in all."""
    if task is Task.MULTILABEL:
        return int(np.nansum(targets))
    counts = np.nansum(targets, axis=0)
    return int(counts[-1]) if task is Task.BINARY else int(counts.min())


def largest_gaps(rows: pd.DataFrame) -> pd.DataFrame:
    """Per backbone x protocol x column: the worst ranked group and the largest gap between two ranked groups."""
    out = []
    if rows.empty:
        return pd.DataFrame()
    for (backbone, dataset, protocol, column), group in rows.groupby(["backbone", "dataset", "protocol", "column"]):
        ranked = group[~group.flagged & group.value.notna()]
        base = {"backbone": backbone, "dataset": dataset, "protocol": protocol, "column": column,
                "groups": len(group), "ranked": len(ranked)}
        if len(ranked) < 2:
            out.append({**base, "worst": "–", "best": "–", "gap": np.nan, "gap_ci": (np.nan, np.nan),
                        "p_gap": np.nan, "note": f"fewer than two groups with {MIN_POSITIVES}+ positives"})
            continue
        worst, best = ranked.loc[ranked.value.idxmin()], ranked.loc[ranked.value.idxmax()]
        (best_values, best_draws), (worst_values, worst_draws) = best["_runs"], worst["_runs"]
        _, difference = _combine([b - w for b, w in zip(best_values, worst_values)],  # paired by run; groups
                                 [b - w for b, w in zip(best_draws, worst_draws)], 0)  # resampled on their patients
        out.append({**base, "worst": worst.group, "best": best.group, "gap": best.value - worst.value,
                    "gap_ci": interval(difference), "p_gap": bootstrap_p_value(difference), "note": ""})
    return pd.DataFrame(out)


def robustness_rows(store, jobs: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per backbone x protocol x corruption x severity (severity 0: the clean test), the metric (mean over runs)."""
    rows = []
    corrupted = jobs[jobs.protocol.str.contains(CORRUPTED, regex=False)]
    for job in corrupted.itertuples():
        evaluation = _details(job)["evaluation"]
        estimate, draws, _ = _scored(store, job.key, None, Task(job.task), None, resamples, seed)
        base = job.protocol.split(CORRUPTED)[0]
        rows.append({"backbone": job.backbone, "dataset": job.dataset, "protocol": base, "seed": job.seed,
                     "repeat": job.repeat, "corruption": evaluation["corruption"],
                     "severity": int(evaluation["severity"]), "value": estimate, "_draws": draws,
                     "of_job": evaluation["of_job"]})
    for key in {row["of_job"] for row in rows}:
        parent = jobs[jobs.key == key]
        if parent.empty:
            continue
        parent = parent.iloc[0]
        estimate, draws, _ = _scored(store, key, None, Task(parent.task), None, resamples, seed)
        rows.append({"backbone": parent["backbone"], "dataset": parent["dataset"], "protocol": parent["protocol"],
                     "seed": int(parent["seed"]), "repeat": int(parent["repeat"]), "corruption": "clean", "severity": 0,
                     "value": estimate, "_draws": draws, "of_job": key})
    return pd.DataFrame(rows)


def robustness_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per backbone x protocol: clean metric, mean over corruptions per severity, relative robustness with a
    patient-level interval (runs held as measured: the mean over them under each resample)."""
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (backbone, dataset, protocol), group in rows.groupby(["backbone", "dataset", "protocol"]):
        clean = group[group.severity == 0]
        if clean.empty:
            continue
        severities = sorted(group.severity.unique())
        curve = [float(group[group.severity == s].value.mean()) for s in severities]
        draws = [np.mean(np.stack(group[group.severity == s]["_draws"].tolist()), axis=0) for s in severities]
        area = np.trapezoid(curve, severities)
        area_draws = np.trapezoid(np.stack(draws), severities, axis=0)
        reference = curve[0] * severities[-1]
        relative = area / reference if reference else np.nan
        relative_draws = area_draws / (draws[0] * severities[-1])
        out.append({"backbone": backbone, "dataset": dataset, "protocol": protocol, "runs": len(clean),
                    "clean": curve[0], **{f"severity {s}": v for s, v in zip(severities[1:], curve[1:])},
                    "relative_robustness": relative, "relative_robustness_ci": interval(relative_draws),
                    "corruptions": ", ".join(sorted(set(group.corruption) - {"clean"}))})
    return pd.DataFrame(out)

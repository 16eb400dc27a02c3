"""Tables from the results store: long CSV rows, a mean +/- std summary, per-sample predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from radbench.results.store import ResultsStore

SUMMARY_METRICS = ("auroc", "accuracy", "balanced_accuracy", "f1_macro", "label_accuracy", "label_prevalence", "kappa",
                   "dice", "iou", "hd95", "map")  # and retrieval's precision_at_<k>, whatever its k
COST_METRICS = ("trainable_params", "total_params", "train_seconds", "infer_ms_per_image", "peak_mem_mb")
KEYS = ["backbone", "dataset", "protocol"]


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def settings(configs: pd.DataFrame) -> pd.Series:
    """Per job, the config keys that set it apart from other jobs of the same backbone x dataset x protocol
    (e.g. `normalize=standard` after an edited study reran into the same output_dir); "" when there is one
    configuration. Seeds and repeats are what a row averages over, so they never count."""
    flat = {job: {k: v for k, v in _flatten(json.loads(config)).items()
                  if k not in ("seed", "repeat") and not k.startswith("protocol.name")}
            for job, config in zip(configs["job"], configs["config"])}
    labels = pd.Series("", index=configs.index)
    for _, group in configs.groupby(KEYS):
        jobs = group["job"].tolist()
        differing = sorted({k for j in jobs for k in flat[j] if len({flat[o].get(k) for o in jobs}) > 1})
        for index, job in zip(group.index, jobs):
            labels[index] = ", ".join(f"{k.removeprefix('protocol.')}={flat[job].get(k, '-')}".replace('"', "")
                                      for k in differing)
    return labels


def damaged_jobs(store: ResultsStore) -> set[str]:
    """Jobs whose stored predictions are damaged: named in one warning, left out of every table."""
    damaged = store.damaged_predictions()
    if damaged:
        import warnings

        listed = "; ".join(f"job {key}: {why}" for key, why in list(damaged.items())[:5])
        warnings.warn(f"{len(damaged)} job(s) left out: {listed}{' ...' if len(damaged) > 5 else ''} — `radbench "
                      "verify` checks every job; rerun them after removing their rows (or the store)", stacklevel=3)
    return set(damaged)


def metric_rows(store: ResultsStore, split: str = "test") -> pd.DataFrame:
    """One row per (job, metric): backbone, dataset, protocol, seed, repeat, metric, value, job, setting."""
    frame = store.metrics(split)
    frame = frame[~frame.job.isin(damaged_jobs(store))]
    jobs = frame.drop_duplicates("job")[["job", *KEYS, "config"]].reset_index(drop=True)
    jobs["setting"] = settings(jobs)
    frame = frame.merge(jobs[["job", "setting"]], on="job", how="left")
    return frame[["backbone", "dataset", "protocol", "seed", "repeat", "metric", "value", "job", "setting"]]


def summary(store: ResultsStore, split: str = "test") -> pd.DataFrame:
    """Mean and std over seeds (and repeated draws) of the headline metrics, per backbone x dataset x protocol
    (x setting, where one protocol ran with several configurations)."""
    rows = metric_rows(store, split)
    rows = rows[rows["metric"].isin(SUMMARY_METRICS) | rows["metric"].str.startswith("precision_at_")]
    keys = [*KEYS, "setting"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "runs"])
    stats = rows.groupby([*keys, "metric"])["value"].agg(["mean", "std"]).unstack("metric")
    out = stats["mean"].copy()
    for metric in out.columns:
        out[f"{metric}_std"] = stats["std"][metric]
    out.columns = [str(c) for c in out.columns]
    out["runs"] = rows.groupby(keys)[["seed", "repeat"]].apply(lambda g: len(g.drop_duplicates()))
    out = out.reset_index()
    costs = metric_rows(store, "test")  # costs are recorded once per job, with its test metrics
    costs = costs[costs["metric"].isin(COST_METRICS)]
    if not costs.empty:
        means = costs.groupby([*keys, "metric"])["value"].mean().unstack("metric").reset_index()
        out = out.merge(means, on=keys, how="left")
    reasons, units = _job_notes(store, split)
    names = [tuple(row[k] for k in KEYS) for _, row in out.iterrows()]
    out["missing"] = [reasons.get(name, "") for name in names]
    out["hd95_unit"] = [units.get(name, "") for name in names]
    return out


def _job_notes(store: ResultsStore, split: str) -> tuple[dict[tuple, str], dict[tuple, str]]:
    """Per backbone x dataset x protocol, from the details its jobs stored (read once): why a metric is missing
    (e.g. a test split with one class has no AUROC), and the unit of its hd95 (px, mm)."""
    reasons, units = {}, {}
    for job in store.jobs().itertuples():
        details = json.loads(job.details)
        name = (job.backbone, job.dataset, job.protocol)
        units[name] = details.get("hd95_unit", "")
        notes = details.get(split, {})
        if "auroc_skipped" in notes:
            reasons[name] = f"{split} has one class"
        elif "auroc_skipped_classes" in notes:
            reasons[name] = f"{split}: one label value for {', '.join(notes['auroc_skipped_classes'])}"
    return reasons, units


COST_HEADERS = {"trainable_params": "trainable", "train_seconds": "train s", "infer_ms_per_image": "ms/img",
                "peak_mem_mb": "peak MB"}


def format_cost(metric: str, value: float | None) -> str:
    """Mean cost over runs, compact: 1.2M trainable, 12.3 train s, 0.41 ms/img, 950 peak MB."""
    if value is None or np.isnan(value):
        return "-"
    if metric == "trainable_params":
        for unit, size in (("M", 1e6), ("k", 1e3)):
            if value >= size:
                return f"{value / size:.3g}{unit}"
        return f"{value:.0f}"
    return f"{value:.2f}" if metric == "infer_ms_per_image" else f"{value:.1f}" if metric == "train_seconds" \
        else f"{value:.0f}"


def format_cell(mean: float, std: float, runs: int = 1, missing: str = "") -> str:
    if mean is None or np.isnan(mean):
        return f"- ({missing})" if missing else "-"
    if std is None or np.isnan(std):
        return f"{mean:.4f}"
    if std == 0 and runs > 1:  # a deterministic protocol (kNN, logreg on fixed features): no spread to report
        return f"{mean:.4f} (same every run)"
    return f"{mean:.4f} ± {std:.4f}"


def predictions(store: ResultsStore, backbone: str | None = None, dataset: str | None = None,
                protocol: str | None = None) -> pd.DataFrame:
    """Per-sample test scores: backbone, dataset, protocol, seed, repeat, sample_id, patient_id (what the report's
    bootstrap resamples by), target_<class>..., score_<class>..., job."""
    jobs = store.jobs()
    jobs = jobs[~jobs.key.isin(damaged_jobs(store))]
    for column, value in (("backbone", backbone), ("dataset", dataset), ("protocol", protocol)):
        if value is not None:
            jobs = jobs[jobs[column] == value]
    frames = []
    metadata: dict[str, pd.DataFrame] = {}
    for job in jobs.itertuples():
        if not store.has_predictions(job.key):  # segmentation jobs keep per-case metrics instead
            continue
        owner = json.loads(job.details).get("evaluation", {}).get("groups_dataset", job.dataset)
        if owner not in metadata:
            metadata[owner] = store.sample_groups(owner)
        class_names, sample_ids, targets, scores = store.predictions(job.key)
        frame = pd.DataFrame({"backbone": job.backbone, "dataset": job.dataset, "protocol": job.protocol,
                              "seed": job.seed, "repeat": job.repeat, "sample_id": sample_ids,
                              "patient_id": store.patient_ids(job.key)})
        for c, name in enumerate(class_names):
            frame[f"target_{name}"] = targets[:, c]
        for c, name in enumerate(class_names):
            frame[f"score_{name}"] = scores[:, c]
        for column in metadata[owner].columns:  # subgroup values (dataset `subgroups:`), of the samples' own dataset
            frame[f"group_{column}"] = metadata[owner][column].reindex(sample_ids).to_numpy()
        frame["job"] = job.key
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["backbone", "dataset", "protocol", "seed", "repeat", "sample_id", "patient_id"])

"""Tables from the results store: long CSV rows, a mean +/- std summary, per-sample predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.results.store import ResultsStore

SUMMARY_METRICS = ("auroc", "accuracy", "balanced_accuracy", "f1_macro", "kappa", "dice", "iou", "hd95")
COST_METRICS = ("trainable_params", "total_params", "train_seconds", "infer_ms_per_image", "peak_mem_mb")
KEYS = ["backbone", "dataset", "protocol"]


def metric_rows(store: ResultsStore, split: str = "test") -> pd.DataFrame:
    """One row per (job, metric): backbone, dataset, protocol, seed, repeat, metric, value, job."""
    frame = store.metrics(split)
    return frame[["backbone", "dataset", "protocol", "seed", "repeat", "metric", "value", "job"]]


def summary(store: ResultsStore, split: str = "test") -> pd.DataFrame:
    """Mean and std over seeds (and repeated draws) of the headline metrics, per backbone x dataset x protocol."""
    rows = metric_rows(store, split)
    rows = rows[rows["metric"].isin(SUMMARY_METRICS)]
    if rows.empty:
        return pd.DataFrame(columns=[*KEYS, "runs"])
    stats = rows.groupby([*KEYS, "metric"])["value"].agg(["mean", "std"]).unstack("metric")
    out = stats["mean"].copy()
    for metric in out.columns:
        out[f"{metric}_std"] = stats["std"][metric]
    out.columns = [str(c) for c in out.columns]
    out["runs"] = rows.groupby(KEYS)[["seed", "repeat"]].apply(lambda g: len(g.drop_duplicates()))
    return out.reset_index()


def format_cell(mean: float, std: float) -> str:
    if mean is None or np.isnan(mean):
        return "-"
    return f"{mean:.4f}" if std is None or np.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def predictions(store: ResultsStore, backbone: str | None = None, dataset: str | None = None,
                protocol: str | None = None) -> pd.DataFrame:
    """Per-sample test scores: backbone, dataset, protocol, seed, sample_id, target_<class>..., score_<class>..."""
    jobs = store.jobs()
    for column, value in (("backbone", backbone), ("dataset", dataset), ("protocol", protocol)):
        if value is not None:
            jobs = jobs[jobs[column] == value]
    frames = []
    for job in jobs.itertuples():
        if not store.has_predictions(job.key):  # segmentation jobs keep per-case metrics instead
            continue
        class_names, sample_ids, targets, scores = store.predictions(job.key)
        frame = pd.DataFrame({"backbone": job.backbone, "dataset": job.dataset, "protocol": job.protocol,
                              "seed": job.seed, "repeat": job.repeat, "sample_id": sample_ids})
        for c, name in enumerate(class_names):
            frame[f"target_{name}"] = targets[:, c]
        for c, name in enumerate(class_names):
            frame[f"score_{name}"] = scores[:, c]
        frame["job"] = job.key
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["backbone", "dataset", "protocol", "seed", "sample_id"])

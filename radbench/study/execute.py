"""Run: one job's protocol on its prepared inputs, into the JobRecord the store keeps — the same function for every
kind of protocol (frozen features, training on images, segmentation); what differs is only what the result holds
(predictions, or per-case metrics)."""

from __future__ import annotations

import dataclasses
import os
import platform
import time

import numpy as np

from radbench.config import StudyConfig
from radbench.metrics import classification_metrics
from radbench.metrics.clinical import calibrated_metrics, clinical_metrics
from radbench.progress import Reporter
from radbench.results import JobRecord
from radbench.results.prediction_blobs import as_stored
from radbench.study.extra_tests import evaluation_key
from radbench.study.plan import Job
from radbench.study.prepare import JobInputs
from radbench.training.loop import peak_memory_mb


def run_job(study: StudyConfig, job: Job, prepared: JobInputs, reporter: Reporter,
            computed: dict | None = None) -> JobRecord:
    """Run the protocol and assemble its record. Frozen-feature jobs take the extraction's costs from the feature
    cache; jobs that train measure their own. `computed` (one per unit) keeps the results of seed-free protocols:
    their job for another seed takes the result as it is (the same numbers; its record says so)."""
    per_case_task = job.spec.record_task  # segmentation, retrieval: per-case metrics, no predictions
    shown = f", features {', '.join(prepared.inputs.feature_types)}" if job.uses_features else ""
    reporter.info(f"  {job.label} (seed {job.seed}{f', repeat {job.repeat}' if job.repeat else ''}){shown}")
    result, seconds = _result(job, prepared, reporter, {} if computed is None else computed)
    metric = job.spec.headline or job.selection_metric
    reporter.info(f"    chosen {result.selected}; test {metric} {result.test_metrics.get(metric, float('nan')):.4f}")
    common = dict(
        key=job.key, study=study.settings.name, backbone=job.backbone.display_name, dataset=job.dataset.name,
        protocol=job.label, protocol_type=job.entry.type, seed=job.seed, repeat=job.repeat,
        config=job_config(study, job, prepared), selected=result.selected, candidates=result.candidates,
        details=result.details, timings={"protocol_seconds": seconds, **machine(prepared.inputs)}, val_metrics=result.val_metrics,
        test_metrics=result.test_metrics, class_names=job.dataset.class_names)
    if per_case_task:
        return JobRecord(**common, task=per_case_task, feature_cache=prepared.cache_name,
                         sample_ids=[c["sample_id"] for c in result.sample_metrics], test_targets=None,
                         test_scores=None, extra_metrics=result.costs, sample_metrics=result.sample_metrics,
                         patient_ids=getattr(result, "patient_ids", None))
    inputs, dataset = prepared.inputs, job.dataset
    test_scores = np.asarray(result.test_scores, dtype=np.float64)
    test = dataset.splits["test"]
    evaluations = [evaluation_record(job, prepared, result, extra, common, reporter)
                   for extra in prepared.extra_tests]
    return JobRecord(**common, task=dataset.task.value, feature_cache=prepared.cache_name,
                     sample_ids=[str(s) for s in test.sample_ids], patient_ids=[str(p) for p in test.patient_ids],
                     test_targets=dataset.targets("test"), test_scores=test_scores,
                     extra_metrics={**_clinical(job, inputs, result, test_scores),
                                    **_costs(result, prepared, seconds, inputs.device)},
                     evaluations=evaluations)


def machine(inputs) -> dict:
    """Where the job's times were measured, and how busy that machine was (the report's cost note)."""
    device = getattr(inputs, "device", None)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"device": str(device), "cpus": os.cpu_count(), "load_1min": load, "host": platform.node()}


def _result(job: Job, prepared: JobInputs, reporter: Reporter, computed: dict):
    """(protocol result, its seconds): run now, or a seed-free protocol's result already computed for another seed
    (the seconds it took then: the cost of the job either way)."""
    if job.shared_key is not None and job.shared_key in computed:
        result, seconds, seed = computed[job.shared_key]
        reporter.info(f"    seed-free protocol: the result computed for seed {seed}, not computed again")
        note = {"computed_once": f"seed-free protocol: the result computed for seed {seed}"}
        return dataclasses.replace(result, details={**result.details, **note}), seconds
    start = time.perf_counter()
    result = job.spec.run(job.config, prepared.inputs)
    seconds = time.perf_counter() - start
    if job.shared_key is not None:
        computed[job.shared_key] = (result, seconds, job.seed)
    return result, seconds


def evaluation_record(job: Job, prepared: JobInputs, result, extra, common: dict, reporter: Reporter) -> JobRecord:
    """The job's tested model on an extra test set: its own row, `<protocol>@<set>`, with predictions. Thresholds
    and operating points come from the source's val split (as a deployed model would carry them)."""
    inputs = prepared.inputs
    start = time.perf_counter()
    scores = as_stored(extra.scores(result.predict(extra.name)))
    seconds = time.perf_counter() - start
    metrics, notes = classification_metrics(extra.task, extra.targets, scores, extra.class_names)
    val_targets = inputs.targets.get("val")
    clinical, clinical_notes = clinical_metrics(
        extra.task, val_targets=None if val_targets is None else val_targets[:, extra.columns],
        val_scores=None if result.val_scores is None else extra.scores(result.val_scores),
        test_targets=extra.targets, test_scores=scores, class_names=extra.class_names)
    metric = job.selection_metric if job.selection_metric in metrics else "auroc"
    reporter.info(f"    {extra.name}: {metric} {metrics.get(metric, float('nan')):.4f} ({len(scores)} images)")
    details = {"evaluation": {**extra.details, "of_job": job.key, "test_set": extra.name,
                              "groups_dataset": extra.groups_dataset},
               **({"test": notes} if notes else {}), **({"clinical": clinical_notes} if clinical_notes else {})}
    return JobRecord(**{**common, "key": evaluation_key(job.key, extra.name),
                        "protocol": f"{job.label}@{extra.name}", "candidates": [], "details": details,
                        "timings": {"predict_seconds": seconds}, "val_metrics": {}, "test_metrics": metrics,
                        "class_names": extra.class_names},
                     task=extra.task.value, feature_cache=None,
                     sample_ids=[str(s) for s in extra.sample_ids], patient_ids=[str(p) for p in extra.patient_ids],
                     test_targets=extra.targets, test_scores=scores, extra_metrics=clinical)


def job_config(study: StudyConfig, job: Job, prepared: JobInputs) -> dict:
    """Everything the job's numbers depend on, as stored with them."""
    dataset, segmentation = job.dataset, job.spec.inputs == "segmentation"
    config = {
        "backbone": {**job.backbone.model_dump(mode="json"), "identity": prepared.identity},
        "dataset": {**next(d for d in study.datasets if d.name == dataset.name).model_dump(mode="json"),
                    "task": "segmentation" if segmentation else dataset.task.value,
                    "class_names": list(dataset.class_names), "split_origin": dataset.split_origin,
                    "split_sizes": {n: len(s) for n, s in dataset.splits.items()}, "notes": list(dataset.notes)},
        "preprocess": prepared.preprocess.identity(),
        "protocol": {"type": job.entry.type, **job.config.model_dump(mode="json")},
    }
    if segmentation:
        return {**config, "seed": job.seed}
    return {**config, "feature_types": prepared.inputs.feature_types, "selection_metric": job.selection_metric,
            "seed": job.seed, "repeat": job.repeat}


def _clinical(job: Job, inputs, result, test_scores: np.ndarray) -> dict:
    """Operating points and calibration (thresholds chosen on val), and the `calibrate:` map's numbers."""
    splits = dict(val_targets=inputs.targets.get("val"), val_scores=result.val_scores,
                  test_targets=inputs.targets["test"], test_scores=test_scores, class_names=inputs.class_names)
    clinical, notes = clinical_metrics(inputs.task, **splits)
    if job.config.calibrate:
        calibrated, calibration = calibrated_metrics(job.config.calibrate, inputs.task, **splits)
        clinical.update(calibrated)
        result.details["calibration"] = calibration
    if notes:
        result.details["clinical"] = notes
    return clinical


def _costs(result, prepared: JobInputs, seconds: float, device) -> dict:
    costs = dict(result.costs)
    if prepared.feature_costs is None:
        return costs
    trainable = costs.get("trainable_params", 0.0)
    return {"trainable_params": trainable, "total_params": prepared.feature_costs["backbone_params"] + trainable,
            "train_seconds": seconds, "infer_ms_per_image": prepared.feature_costs["infer_ms_per_image"],
            "peak_mem_mb": peak_memory_mb(device)}

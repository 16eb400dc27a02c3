"""Jobs: one (backbone, dataset, protocol variant, seed, repeat), keyed by a hash of everything that
changes its numbers, run into a JobRecord with its config, metrics, predictions and costs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from radbench.backbones import BackboneConfig
from radbench.config import ProtocolEntry, StudyConfig
from radbench.data import LabeledDataset
from radbench.data.segmentation import SegmentationDataset
from radbench.data.transforms import Preprocess
from radbench.errors import RadbenchError
from radbench.feasibility import usable_variants
from radbench.features.cache import stable_hash
from radbench.metrics import default_selection_metric, selectable_metrics
from radbench.metrics.calibration import check_method
from radbench.metrics.clinical import calibrated_metrics, clinical_metrics
from radbench.progress import Reporter
from radbench.protocols import PROTOCOLS, ProtocolConfigBase, ProtocolInput
from radbench.protocols.base import ProtocolSpec
from radbench.results import JobRecord
from radbench.training.loop import peak_memory_mb


@dataclass
class Job:
    backbone: BackboneConfig
    dataset: LabeledDataset
    entry: ProtocolEntry
    spec: ProtocolSpec
    label: str  # protocol label in results, with the variant (e.g. few_shot@4shot)
    config: ProtocolConfigBase  # the variant's config
    seed: int
    repeat: int
    feature_types: list[str]
    selection_metric: str
    key: str

    @property
    def uses_features(self) -> bool:
        return self.spec.inputs == "features"


SCRATCH_LABEL = "scratch_unet"  # the backbone column of a U-Net trained from scratch


def plan_jobs(study: StudyConfig, backbone: BackboneConfig, dataset, data_key: str) -> list[Job]:
    """Every (protocol variant, seed, repeat) of the protocols that apply to this dataset's kind."""
    jobs = []
    segmentation = isinstance(dataset, SegmentationDataset)
    for entry in study.protocols:
        spec = PROTOCOLS.get(entry.type)
        if (spec.inputs == "segmentation") != segmentation or not entry.runs_on(backbone):
            continue
        metric = "dice" if segmentation else (
            entry.config.selection_metric or study.settings.selection_metric or default_selection_metric(dataset.task))
        if not segmentation and metric not in selectable_metrics(dataset.task):
            raise RadbenchError(f"protocol {entry.label}: selection_metric {metric!r} is not computed for "
                                f"{dataset.task.value} dataset {dataset.name!r}; use one of "
                                f"{', '.join(selectable_metrics(dataset.task))}")
        _check_calibration(entry, dataset, segmentation)
        for suffix, variant in usable_variants(study, backbone, dataset, entry)[0]:
            owner = backbone
            if getattr(variant, "decoder", None) == "scratch_unet":  # no backbone: planned once, as its own row
                if backbone is not study.backbones[0]:
                    continue
                owner = backbone.model_copy(update={"label": SCRATCH_LABEL})
            label = entry.label if suffix is None else f"{entry.label}@{suffix}"
            feature_types = variant.feature_types(study.settings.features)
            for seed in study.settings.seeds:
                for repeat in range(spec.repeats(variant)):
                    key = stable_hash({
                        "data": data_key, "backbone": owner.display_name, "dataset": dataset.name,
                        "protocol": entry.type, "label": label,
                        "config": variant.model_dump(mode="json", exclude=_not_in_key(variant)),
                        "feature_types": feature_types, "selection_metric": metric, "seed": seed, "repeat": repeat,
                    }, length=20)
                    jobs.append(Job(owner, dataset, entry, spec, label, variant, seed, repeat, feature_types,
                                    metric, key))
    return jobs


def _check_calibration(entry: ProtocolEntry, dataset, segmentation: bool) -> None:
    method = entry.config.calibrate
    if method is None:
        return
    problem = "calibrate applies to classification; segmentation has no class scores to calibrate" \
        if segmentation else check_method(method, dataset.task)
    if problem:
        raise RadbenchError(f"protocol {entry.label} on dataset {dataset.name!r}: {problem}")


def _not_in_key(variant) -> set[str]:
    """The label is a name, not a setting; keys added to a protocol after stores existed count only once set
    away from their default, so that the job keys of older stores stay the same and those stores resume."""
    fields = type(variant).model_fields
    later = set(variant.added_later) | set(variant.added_to_every_protocol)
    return {"name"} | {key for key in later if getattr(variant, key) == fields[key].default}


def run_job(study: StudyConfig, job: Job, inputs: ProtocolInput, reporter: Reporter, preprocess: Preprocess,
            identity: dict, feature_costs: dict | None, cache_name: str | None) -> JobRecord:
    """Run the protocol and assemble its record. `feature_costs` (backbone_params, infer_ms_per_image) comes
    from the feature cache for frozen-feature jobs; image-training jobs measure their own costs."""
    dataset = job.dataset
    shown = f", features {', '.join(inputs.feature_types)}" if job.uses_features else ""
    reporter.info(f"  {job.label} (seed {job.seed}{f', repeat {job.repeat}' if job.repeat else ''}){shown}")
    start = time.perf_counter()
    result = job.spec.run(job.config, inputs)
    seconds = time.perf_counter() - start
    clinical, notes = clinical_metrics(inputs.task, inputs.targets.get("val"), result.val_scores, inputs.targets["test"],
                                       np.asarray(result.test_scores, dtype=np.float64), inputs.class_names)
    if job.config.calibrate:
        calibrated, calibration = calibrated_metrics(job.config.calibrate, inputs.task, inputs.targets.get("val"),
                                                     result.val_scores, inputs.targets["test"],
                                                     np.asarray(result.test_scores, dtype=np.float64),
                                                     inputs.class_names)
        clinical.update(calibrated)
        result.details["calibration"] = calibration
    if notes:
        result.details["clinical"] = notes
    main = result.test_metrics.get(job.selection_metric, float("nan"))
    reporter.info(f"    chosen {result.selected}; test {job.selection_metric} {main:.4f}")
    costs = dict(result.costs)
    if feature_costs is not None:
        trainable = costs.get("trainable_params", 0.0)
        costs = {"trainable_params": trainable, "total_params": feature_costs["backbone_params"] + trainable,
                 "train_seconds": seconds, "infer_ms_per_image": feature_costs["infer_ms_per_image"],
                 "peak_mem_mb": peak_memory_mb(inputs.device)}
    config = {
        "backbone": {**job.backbone.model_dump(mode="json"), "identity": identity},
        "dataset": {**_dataset_config(study, dataset.name), "task": dataset.task.value,
                    "class_names": list(dataset.class_names), "split_origin": dataset.split_origin,
                    "split_sizes": {n: len(s) for n, s in dataset.splits.items()}, "notes": list(dataset.notes)},
        "preprocess": preprocess.identity(),
        "protocol": {"type": job.entry.type, **job.config.model_dump(mode="json")},
        "feature_types": inputs.feature_types,
        "selection_metric": job.selection_metric,
        "seed": job.seed,
        "repeat": job.repeat,
    }
    test = dataset.splits["test"]
    return JobRecord(
        key=job.key, study=study.settings.name, backbone=job.backbone.display_name, dataset=dataset.name,
        protocol=job.label, protocol_type=job.entry.type, seed=job.seed, repeat=job.repeat, task=dataset.task.value,
        config=config, selected=result.selected, candidates=result.candidates, details=result.details,
        timings={"protocol_seconds": seconds}, feature_cache=cache_name, val_metrics=result.val_metrics,
        test_metrics=result.test_metrics, class_names=dataset.class_names,
        sample_ids=[str(s) for s in test.sample_ids], patient_ids=[str(p) for p in test.patient_ids],
        test_targets=dataset.targets("test"),
        test_scores=np.asarray(result.test_scores, dtype=np.float64), extra_metrics={**clinical, **costs},
    )


def run_segmentation_job(study: StudyConfig, job: Job, inputs, reporter: Reporter, preprocess: Preprocess,
                         identity: dict) -> JobRecord:
    dataset = job.dataset
    reporter.info(f"  {job.label} (seed {job.seed})")
    start = time.perf_counter()
    result = job.spec.run(job.config, inputs)
    seconds = time.perf_counter() - start
    reporter.info(f"    chosen {result.selected}; test dice {result.test_metrics.get('dice', float('nan')):.4f}")
    config = {
        "backbone": {**job.backbone.model_dump(mode="json"), "identity": identity},
        "dataset": {**_dataset_config(study, dataset.name), "task": "segmentation",
                    "class_names": list(dataset.class_names), "split_origin": dataset.split_origin,
                    "split_sizes": {n: len(s) for n, s in dataset.splits.items()}, "notes": list(dataset.notes)},
        "preprocess": preprocess.identity(),
        "protocol": {"type": job.entry.type, **job.config.model_dump(mode="json")},
        "seed": job.seed,
    }
    return JobRecord(
        key=job.key, study=study.settings.name, backbone=job.backbone.display_name, dataset=dataset.name,
        protocol=job.label, protocol_type=job.entry.type, seed=job.seed, repeat=job.repeat, task="segmentation",
        config=config, selected=result.selected, candidates=result.candidates, details=result.details,
        timings={"protocol_seconds": seconds}, feature_cache=None, val_metrics=result.val_metrics,
        test_metrics=result.test_metrics, class_names=dataset.class_names,
        sample_ids=[c["sample_id"] for c in result.sample_metrics], test_targets=None, test_scores=None,
        extra_metrics=result.costs, sample_metrics=result.sample_metrics,
    )


def _dataset_config(study: StudyConfig, name: str) -> dict:
    return next(d for d in study.datasets if d.name == name).model_dump(mode="json")

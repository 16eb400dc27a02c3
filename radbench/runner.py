"""Runs a study: load and check all data, then per backbone x dataset get features (cached) and run every
pending (protocol, seed) job, storing each job atomically. Finished jobs are skipped on a rerun."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from radbench.backbones import BackboneConfig, BackboneDescription, describe_backbone
from radbench.backbones.layout import blocks_needed
from radbench.config import ProtocolEntry, StudyConfig
from radbench.data import LabeledDataset, load_dataset
from radbench.data.base import DatasetConfigBase
from radbench.data.precache import precache_dataset
from radbench.data.transforms import Preprocess
from radbench.device import effective_precision, resolve_device
from radbench.features.cache import FeatureCache, stable_hash
from radbench.features.extract import default_workers_for_files
from radbench.features.provider import Extraction, FeatureProvider, feature_key
from radbench.features.source import FeatureSource
from radbench.metrics import default_selection_metric
from radbench.progress import Reporter
from radbench.protocols import PROTOCOLS, ProtocolInput
from radbench.results import JobRecord, ResultsStore


@dataclass
class Job:
    backbone: BackboneConfig
    dataset: LabeledDataset
    protocol: ProtocolEntry
    seed: int
    feature_types: list[str]
    selection_metric: str
    key: str


@dataclass
class RunSummary:
    jobs_total: int = 0
    jobs_run: int = 0
    jobs_skipped: int = 0
    extractions: list[Extraction] = field(default_factory=list)


def results_path(study: StudyConfig):
    return study.settings.output_dir / "results.sqlite"


def load_datasets(study: StudyConfig, reporter: Reporter) -> dict[str, LabeledDataset]:
    """Every dataset is read and checked before any model is built or any job runs."""
    datasets = {}
    for cfg in study.datasets:
        dataset = load_dataset(cfg)
        sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
        reporter.info(f"dataset {dataset.name}: {dataset.task.value}, {dataset.num_classes} classes; {sizes} "
                      f"(splits: {dataset.split_origin})")
        for note in dataset.notes:
            reporter.info(f"  note: {note}")
        datasets[cfg.name] = dataset
    return datasets


def preprocess_for(study: StudyConfig, backbone: BackboneConfig, description: BackboneDescription,
                   dataset_cfg: DatasetConfigBase) -> Preprocess:
    norm = description.normalisation
    return Preprocess(
        image_size=backbone.image_size or study.settings.image_size,
        mode=dataset_cfg.resize or study.settings.resize,
        mean=tuple(norm.mean), std=tuple(norm.std), interpolation=norm.interpolation,
    )


def plan_jobs(study: StudyConfig, backbone: BackboneConfig, dataset: LabeledDataset, features_key: str) -> list[Job]:
    jobs = []
    for entry in study.protocols:
        feature_types = entry.config.feature_types(study.settings.features)
        metric = entry.config.selection_metric or study.settings.selection_metric or default_selection_metric(dataset.task)
        for seed in study.settings.seeds:
            key = stable_hash({
                "features": features_key, "backbone": backbone.display_name, "dataset": dataset.name,
                "protocol": entry.type, "label": entry.label,
                "config": entry.config.model_dump(mode="json", exclude={"name"}),
                "feature_types": feature_types, "selection_metric": metric, "seed": seed,
            }, length=20)
            jobs.append(Job(backbone, dataset, entry, seed, feature_types, metric, key))
    return jobs


def run_study(study: StudyConfig, reporter: Reporter | None = None, extract_only: bool = False) -> RunSummary:
    reporter = reporter or Reporter()
    settings = study.settings
    datasets = load_datasets(study, reporter)
    device = resolve_device(settings.device)
    precision = effective_precision(device, settings.precision)
    store = ResultsStore(results_path(study))
    finished = store.finished_keys()
    provider = FeatureProvider(FeatureCache(study.feature_cache_dir), device, precision, settings.cache_dtype,
                               settings.batch_size, settings.num_workers, reporter)
    summary = RunSummary()
    reporter.info(f"study {settings.name}: device {device}, precision {precision}, output {settings.output_dir}")
    for backbone in study.backbones:
        description = describe_backbone(backbone)
        for dataset_cfg in study.datasets:
            preprocess = preprocess_for(study, backbone, description, dataset_cfg)
            dataset, preprocess = precache_dataset(
                datasets[dataset_cfg.name], preprocess, study.feature_cache_dir / "preprocessed",
                settings.preprocess_dtype, settings.preprocess_cache, dataset_cfg.on_bad_file,
                default_workers_for_files() if settings.num_workers is None else settings.num_workers, reporter)
            key = feature_key(description, preprocess, dataset, settings.cache_dtype, precision)
            jobs = plan_jobs(study, backbone, dataset, key)
            pending = [job for job in jobs if job.key not in finished]
            summary.jobs_total += len(jobs)
            summary.jobs_skipped += len(jobs) - len(pending)
            reporter.info(f"{backbone.display_name} x {dataset.name}: {len(pending)} of {len(jobs)} jobs to run")
            if not pending and not extract_only:
                continue
            needed = max(blocks_needed(t) for job in jobs for t in job.feature_types)
            cached = provider.get(backbone, description, dataset, preprocess, needed)
            if extract_only:
                continue
            features = FeatureSource(cached.bundle, cached.layout.columns)  # shared by every job here
            extract_seconds = sum(cached.manifest.get("extract_seconds", {}).values())
            for job in pending:
                record = run_job(study, job, features, cached, device, reporter, preprocess, extract_seconds)
                store.save(record)
                summary.jobs_run += 1
        provider.release()
    summary.extractions = provider.extractions
    return summary


def run_job(study: StudyConfig, job: Job, features: FeatureSource, cached, device, reporter: Reporter,
            preprocess: Preprocess, extract_seconds: float) -> JobRecord:
    dataset, entry = job.dataset, job.protocol
    feature_types = list(dict.fromkeys(cached.layout.resolve(t) for t in job.feature_types))
    reporter.info(f"  {entry.label} (seed {job.seed}): features {', '.join(feature_types)}")
    inputs = ProtocolInput(
        task=dataset.task, class_names=dataset.class_names, features=features,
        targets={name: dataset.targets(name) for name in dataset.splits}, feature_types=feature_types,
        selection_metric=job.selection_metric, seed=job.seed, device=device, reporter=reporter,
    )
    start = time.perf_counter()
    result = PROTOCOLS.get(entry.type).run(entry.config, inputs)
    seconds = time.perf_counter() - start
    main = result.test_metrics.get(job.selection_metric, float("nan"))
    reporter.info(f"    chosen {result.selected}; test {job.selection_metric} {main:.4f}")
    test = dataset.splits["test"]
    config = {
        "backbone": {**job.backbone.model_dump(mode="json"), "identity": cached.manifest["backbone"]},
        "dataset": {**_dataset_config(study, dataset.name), "task": dataset.task.value,
                    "class_names": list(dataset.class_names), "split_origin": dataset.split_origin,
                    "split_sizes": {n: len(s) for n, s in dataset.splits.items()}, "notes": list(dataset.notes)},
        "preprocess": preprocess.identity(),
        "protocol": {"type": entry.type, **entry.config.model_dump(mode="json")},
        "feature_types": feature_types,
        "selection_metric": job.selection_metric,
        "seed": job.seed,
    }
    return JobRecord(
        key=job.key, study=study.settings.name, backbone=job.backbone.display_name, dataset=dataset.name,
        protocol=entry.label, protocol_type=entry.type, seed=job.seed, task=dataset.task.value, config=config,
        selected=result.selected, candidates=result.candidates, details=result.details,
        timings={"protocol_seconds": seconds, "feature_extraction_seconds": extract_seconds},
        feature_cache=cached.folder.name, val_metrics=result.val_metrics, test_metrics=result.test_metrics,
        class_names=dataset.class_names, sample_ids=[str(s) for s in test.sample_ids],
        test_targets=dataset.targets("test"), test_scores=np.asarray(result.test_scores, dtype=np.float64),
    )


def _dataset_config(study: StudyConfig, name: str) -> dict:
    cfg = next(d for d in study.datasets if d.name == name)
    return cfg.model_dump(mode="json")

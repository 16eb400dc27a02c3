"""Runs a study: load and check all data, then per backbone x dataset get features (cached) and run every
pending (protocol, seed) job, storing each job atomically. Finished jobs are skipped on a rerun."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from radbench.backbones import BackboneConfig, BackboneDescription, describe_backbone
from radbench.backbones.layout import blocks_needed
from radbench.config import StudyConfig
from radbench.data import LabeledDataset, load_dataset
from radbench.data.base import DatasetConfigBase
from radbench.data.precache import precache_dataset
from radbench.data.transforms import Preprocess
from radbench.device import effective_precision, resolve_device
from radbench.features.cache import FeatureCache
from radbench.features.extract import default_workers_for_files
from radbench.features.provider import Extraction, FeatureProvider, feature_key
from radbench.features.source import FeatureSource
from radbench.jobs import plan_jobs, run_job, run_segmentation_job
from radbench.progress import Reporter
from radbench.protocols import PROTOCOLS, ProtocolInput
from radbench.protocols.base import ImageContext
from radbench.protocols.segmentation import SegmentationInput
from radbench.results import ResultsStore


@dataclass
class RunSummary:
    jobs_total: int = 0
    jobs_run: int = 0
    jobs_skipped: int = 0
    used_feature_cache: bool = False  # any frozen-feature job planned (extracted now or read from the cache)
    extractions: list[Extraction] = field(default_factory=list)


def results_path(study: StudyConfig):
    return study.settings.output_dir / "results.sqlite"


def load_datasets(study: StudyConfig, reporter: Reporter) -> dict[str, LabeledDataset]:
    """Every dataset is read and checked before any model is built or any job runs."""
    datasets = {}
    for cfg in study.datasets:
        dataset = load_dataset(cfg)
        sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
        task = getattr(dataset, "task", None)
        kind = task.value if task is not None else "segmentation"
        reporter.info(f"dataset {dataset.name}: {kind}, {dataset.num_classes} classes; {sizes} "
                      f"(splits: {dataset.split_origin})")
        for note in dataset.notes:
            reporter.info(f"  note: {note}")
        datasets[cfg.name] = dataset
        for entry in study.protocols:
            spec = PROTOCOLS.get(entry.type)
            if spec.check is not None and (spec.inputs == "segmentation") == (kind == "segmentation"):
                spec.check(entry.config, dataset, study.settings.seeds)
    return datasets


def preprocess_for(study: StudyConfig, backbone: BackboneConfig, description: BackboneDescription,
                   dataset_cfg: DatasetConfigBase) -> Preprocess:
    norm = description.normalisation
    return Preprocess(
        image_size=backbone.image_size or study.settings.image_size,
        mode=dataset_cfg.resize or study.settings.resize,
        mean=tuple(norm.mean), std=tuple(norm.std), interpolation=norm.interpolation,
    )


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
            base_preprocess = preprocess_for(study, backbone, description, dataset_cfg)

            def prepared(size: int, raw=datasets[dataset_cfg.name], base=base_preprocess,
                         on_bad_file=dataset_cfg.on_bad_file):
                """The dataset reading its images from the preprocessing cache at `size` (built when missing)."""
                return precache_dataset(
                    raw, replace(base, image_size=size), study.feature_cache_dir / "preprocessed",
                    settings.preprocess_dtype, settings.preprocess_cache, on_bad_file,
                    default_workers_for_files() if settings.num_workers is None else settings.num_workers, reporter)

            dataset, preprocess = prepared(base_preprocess.image_size)
            key = feature_key(description, preprocess, dataset, settings.cache_dtype, precision)
            jobs = plan_jobs(study, backbone, dataset, key)
            pending = [job for job in jobs if job.key not in finished]
            summary.jobs_total += len(jobs)
            summary.jobs_skipped += len(jobs) - len(pending)
            reporter.info(f"{backbone.display_name} x {dataset.name}: {len(pending)} of {len(jobs)} jobs to run")
            feature_jobs = [job for job in (jobs if extract_only else pending) if job.uses_features]
            summary.used_feature_cache |= any(job.uses_features for job in jobs)
            if feature_jobs:
                needed = max(blocks_needed(t) for job in feature_jobs for t in job.feature_types)
                cached = provider.get(backbone, description, dataset, preprocess, needed)
                if not extract_only:
                    _run_feature_jobs(feature_jobs, cached, store, summary, study=study, reporter=reporter,
                                      dataset=dataset, preprocess=preprocess, device=device)
            segmentation_jobs = [job for job in pending if job.spec.inputs == "segmentation"]
            for job in [] if extract_only else segmentation_jobs:
                # a protocol-level image_size reads images cached at that size, not upsampled from the study's
                job_dataset, job_preprocess = prepared(job.config.image_size or base_preprocess.image_size)
                inputs = SegmentationInput(
                    job_dataset, job_preprocess, lambda size, b=backbone: provider.backbone(b, size), device,
                    precision, 0 if job_dataset.splits["train"].images.in_memory else default_workers_for_files(),
                    job.seed,
                    reporter, study.feature_cache_dir / f"{key}-seg",
                    settings.output_dir / "segmentation" / _slug(job.backbone.display_name) / dataset.name
                    / _slug(job.label) / f"seed{job.seed}")
                store.save(run_segmentation_job(study, job, inputs, reporter, job_preprocess, description.identity))
                summary.jobs_run += 1
            image_jobs = [job for job in pending if job.spec.inputs == "images"]
            if image_jobs and not extract_only:
                model = provider.backbone(backbone, preprocess.image_size)
                workers = 0 if dataset.splits["train"].images.in_memory else default_workers_for_files()
                context = ImageContext(dataset, preprocess, model, precision,
                                       workers if settings.num_workers is None else settings.num_workers,
                                       study.feature_cache_dir / f"{key}-tokens")
                for job in image_jobs:
                    inputs = _inputs(job, dataset, None, device, reporter, images=context)
                    store.save(run_job(study, job, inputs, reporter, preprocess, description.identity, None, None))
                    summary.jobs_run += 1
        provider.release()
    summary.extractions = provider.extractions
    return summary


def _run_feature_jobs(jobs, cached, store, summary, *, study, reporter, dataset, preprocess, device) -> None:
    features = FeatureSource(cached.bundle, cached.layout.columns)  # shared by every job here
    manifest = cached.manifest
    images = sum(split["n"] for split in manifest["splits"].values())
    costs = {"backbone_params": float(manifest.get("backbone_params", 0)),
             "infer_ms_per_image": 1000 * sum(manifest.get("extract_seconds", {}).values()) / max(1, images)}
    for job in jobs:
        inputs = _inputs(job, dataset, features, device, reporter,
                         feature_types=list(dict.fromkeys(cached.layout.resolve(t) for t in job.feature_types)))
        store.save(run_job(study, job, inputs, reporter, preprocess, manifest["backbone"], costs, cached.folder.name))
        summary.jobs_run += 1


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)


def _inputs(job, dataset, features, device, reporter, feature_types=None, images=None) -> ProtocolInput:
    return ProtocolInput(
        task=dataset.task, class_names=dataset.class_names, features=features,
        targets={name: dataset.targets(name) for name in dataset.splits},
        feature_types=feature_types or job.feature_types, selection_metric=job.selection_metric, seed=job.seed,
        device=device, reporter=reporter, dataset=dataset, repeat=job.repeat, images=images,
    )


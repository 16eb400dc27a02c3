"""Prepare: everything a unit's jobs read — its checked data, the preprocessing cache, cached features, the
backbone — behind one context. A protocol declares what it takes (`ProtocolSpec.inputs`: features, images or
segmentation) and the context builds exactly that, by name, through INPUTS; a new kind of input is one more entry
there, not a change to the run loop."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from radbench.backbones import BackboneConfig, BackboneDescription, describe_backbone
from radbench.backbones.layout import blocks_needed
from radbench.config import StudyConfig
from radbench.data.base import DatasetConfigBase
from radbench.data.precache import precache_dataset
from radbench.data.slices import slice_view
from radbench.data.transforms import Preprocess
from radbench.distributed import Ranks
from radbench.errors import RadbenchError
from radbench.features.extract import default_workers_for_files
from radbench.features.provider import FeatureProvider, feature_key
from radbench.paths import job_folder
from radbench.progress import Reporter
from radbench.protocols import ProtocolInput
from radbench.protocols.base import ImageContext
from radbench.protocols.segmentation import SegmentationInput
from radbench.study.extra_tests import ExtraTest, corruption_set, external_set, feature_source_with
from radbench.study.plan import SCRATCH_LABELS, Job, UnitPlan, unit_jobs


def file_workers(settings) -> int:
    """Data-loading workers for images decoded from files: the study's `num_workers`, else by CPU count."""
    return default_workers_for_files() if settings.num_workers is None else settings.num_workers


def precache_workers(settings) -> int:
    """Workers for the first pass over raw files: the study's `num_workers`, else every core (the main process only
    copies decoded images into the cache; benchmarks/first_pass.py: 2 workers 1.7x one on 2 cores)."""
    return default_workers_for_files(main_busy=False) if settings.num_workers is None else settings.num_workers


def preprocess_for(study: StudyConfig, backbone: BackboneConfig, description: BackboneDescription,
                   dataset_cfg: DatasetConfigBase) -> Preprocess:
    norm = description.normalisation
    return Preprocess(
        image_size=backbone.image_size or study.settings.image_size,
        mode=dataset_cfg.resize or study.settings.resize,
        mean=tuple(norm.mean), std=tuple(norm.std), interpolation=norm.interpolation,
    )


@dataclass
class JobInputs:
    """What one job's protocol runs on, and what its record says about where that came from."""

    inputs: object  # ProtocolInput or SegmentationInput
    preprocess: Preprocess
    identity: dict  # the backbone's weights identity (hub revision, checkpoint hash, ...)
    feature_costs: dict | None = None  # frozen features: backbone_params, infer_ms_per_image from the cache
    cache_name: str | None = None  # the feature cache entry read
    extra_tests: list = field(default_factory=list)  # the extra test sets the job's model scores (ExtraTest)


@dataclass
class UnitContext:
    """One backbone x dataset, prepared: the dataset reading the preprocessing cache, its feature key, its jobs."""

    study: StudyConfig
    unit: UnitPlan
    raw: object  # the checked LabeledDataset / SegmentationDataset
    provider: FeatureProvider
    precision: str
    device: object  # torch.device
    reporter: Reporter
    ranks: Ranks
    datasets: dict = field(default_factory=dict)  # every checked dataset by name (external tests read others)

    def prepare(self) -> list[Job]:
        """Describe the backbone, build (or find) the preprocessing cache; the unit's planned jobs."""
        self.description = describe_backbone(self.unit.backbone)
        self.base_preprocess = preprocess_for(self.study, self.unit.backbone, self.description, self.unit.dataset_cfg)
        with self.ranks.rank_zero_first():  # every rank prepares the unit: rank 0 builds the cache first
            self.dataset, self.preprocess = self.at_size(self.base_preprocess.image_size)
        settings = self.study.settings
        self.key = feature_key(self.description, self.preprocess, self.dataset, settings.cache_dtype, self.precision)
        self.jobs = unit_jobs(self.study, self.unit, self.dataset, self.key)
        self.cached = None
        self.extra_tests: dict[str, ExtraTest] = {}
        return self.jobs

    def at_size(self, size: int):
        """The dataset reading its images from the preprocessing cache at `size` (built when missing)."""
        settings = self.study.settings
        return precache_dataset(
            self.raw, replace(self.base_preprocess, image_size=size),
            root=self.study.feature_cache_dir / "preprocessed", dtype=settings.preprocess_dtype,
            mode=settings.preprocess_cache, on_bad_file=self.unit.dataset_cfg.on_bad_file,
            workers=precache_workers(settings), reporter=self.reporter)

    def extract(self, jobs: list[Job]) -> None:
        """The cached features `jobs` read (extracted once, for the deepest block any of them asks for)."""
        feature_jobs = [job for job in jobs if job.uses_features]
        needed = max((blocks_needed(t) for job in feature_jobs for t in job.feature_types), default=0)
        if feature_jobs:
            self.cached = self.provider.get(self.unit.backbone, self.description, self.dataset, self.preprocess,
                                            blocks_needed=needed)
        names = list(dict.fromkeys(name for job in jobs for name in job.evaluations))
        for name in names:
            extra = self.extra_test(name)
            if any(job.uses_features and name in job.evaluations for job in jobs):
                extra.features = self.provider.get(self.unit.backbone, self.description, extra.dataset,
                                                   extra.preprocess, blocks_needed=needed)
            self.extra_tests[name] = extra

    def extra_test(self, name: str) -> ExtraTest:
        """An external dataset at its own preprocessing for this backbone, or this unit's test split corrupted."""
        cfg = self.unit.dataset_cfg
        if name.startswith("corrupt:"):
            return corruption_set(self.dataset, self.preprocess, name, cfg.corruptions.modality)
        config = next(e for e in cfg.external_tests if e.name == name)
        external_cfg = next(d for d in self.study.datasets if d.name == config.dataset)
        raw = self.datasets[config.dataset]
        if external_cfg.external_only and config.split == "test":  # nobody trains on it: its test split alone
            raw = replace(raw, splits={"test": raw.splits["test"]})
        base = replace(preprocess_for(self.study, self.unit.backbone, self.description, external_cfg),
                       image_size=self.base_preprocess.image_size)
        settings = self.study.settings
        with self.ranks.rank_zero_first():
            dataset, preprocess = precache_dataset(
                raw, base, root=self.study.feature_cache_dir / "preprocessed", dtype=settings.preprocess_dtype,
                mode=settings.preprocess_cache, on_bad_file=external_cfg.on_bad_file, workers=precache_workers(settings),
                reporter=self.reporter)
        where = f"datasets ({cfg.name}).external_tests ({config.dataset})"
        return external_set(self.dataset, dataset, preprocess, config, where)

    def inputs(self, job: Job) -> JobInputs:
        """What the job's protocol declared it takes, built by INPUTS under that name."""
        if job.spec.inputs not in INPUTS:
            raise RadbenchError(f"protocol {job.entry.type!r} takes inputs {job.spec.inputs!r}, which nothing "
                                f"prepares; known: {', '.join(sorted(INPUTS))}")
        return INPUTS[job.spec.inputs](self, job)

    def folder(self, kind: str, job: Job) -> Path:
        return job_folder(self.study.settings.output_dir, kind, job.backbone.display_name, self.dataset.name,
                          job.label, seed=job.seed, repeat=job.repeat)

    def model_description(self, job: Job, preprocess: Preprocess, **extra) -> dict:
        """What a saved model records about itself: its backbone entry, the data and protocol, the preprocessing."""
        return {"backbone": {**job.backbone.model_dump(mode="json"), "label": job.backbone.display_name},
                "dataset": self.dataset.name, "protocol": job.label, "seed": job.seed,
                "preprocess": preprocess.identity(), **extra}

    def protocol_input(self, job: Job, *, features=None, feature_types=None, images=None) -> ProtocolInput:
        dataset = self.dataset
        return ProtocolInput(
            task=dataset.task, class_names=dataset.class_names, features=features,
            targets={name: dataset.targets(name) for name in dataset.splits},
            feature_types=feature_types or job.feature_types, selection_metric=job.selection_metric, seed=job.seed,
            device=self.device, reporter=self.reporter, dataset=dataset, repeat=job.repeat, images=images,
            fit_workers=self.study.settings.fit_workers or cores_given())


def cores_given() -> int:
    """The cores this process may run on (a SLURM or taskset allocation), not the machine's."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def feature_inputs(unit: UnitContext, job: Job) -> JobInputs:
    """A frozen-feature protocol: the unit's cached features, with the extraction's costs."""
    cached = unit.cached
    manifest = cached.manifest
    images = sum(split["n"] for split in manifest["splits"].values())
    costs = {"backbone_params": float(manifest.get("backbone_params", 0)),
             "infer_ms_per_image": 1000 * sum(manifest.get("extract_seconds", {}).values()) / max(1, images)}
    feature_types = list(dict.fromkeys(cached.layout.resolve(t) for t in job.feature_types))
    extras = {name: unit.extra_tests[name] for name in job.evaluations}
    features = feature_source_with(cached, extras, feature_types) if extras else cached.source
    inputs = unit.protocol_input(job, features=features, feature_types=feature_types)
    return JobInputs(inputs, unit.preprocess, manifest["backbone"], costs, cached.folder.name,
                     extra_tests=list(extras.values()))


def image_inputs(unit: UnitContext, job: Job) -> JobInputs:
    """A protocol training on images: the backbone (copied per run by the protocol), the data, 3D volumes as
    slices."""
    settings, dataset = unit.study.settings, unit.dataset
    model = unit.provider.backbone(unit.unit.backbone, unit.preprocess.image_size)
    identity = {**unit.description.identity, **model.weights_revision}
    in_memory = dataset.splits["train"].images.in_memory
    slices = slice_view(dataset) if dataset.volume is not None else None  # 3D: trained on slices
    context = ImageContext(
        dataset=slices.dataset if slices else dataset, preprocess=unit.preprocess, backbone=model,
        precision=unit.precision,
        num_workers=0 if in_memory and settings.num_workers is None else file_workers(settings),
        cache_folder=unit.study.feature_cache_dir / f"{unit.key}-tokens", model_folder=unit.folder("models", job),
        description=unit.model_description(job, unit.preprocess, weights_identity=identity), slices=slices,
        extra_images={name: unit.extra_tests[name].images() for name in job.evaluations})
    return JobInputs(unit.protocol_input(job, images=context), unit.preprocess, identity,
                     extra_tests=[unit.extra_tests[name] for name in job.evaluations])


def segmentation_inputs(unit: UnitContext, job: Job) -> JobInputs:
    """A segmentation decoder: the data at the protocol's image size (cached at that size, not upsampled), a
    backbone builder per size."""
    dataset, preprocess = unit.at_size(job.config.image_size or unit.base_preprocess.image_size)
    inputs = SegmentationInput(
        dataset=dataset, preprocess=preprocess,
        build_backbone=lambda size: unit.provider.backbone(unit.unit.backbone, size), device=unit.device,
        precision=unit.precision,
        num_workers=0 if dataset.splits["train"].images.in_memory else default_workers_for_files(), seed=job.seed,
        reporter=unit.reporter, cache_folder=unit.study.feature_cache_dir / f"{unit.key}-seg",
        output_folder=unit.folder("segmentation", job), repeat=job.repeat,
        description=unit.model_description(job, preprocess))
    identity = unit.description.identity
    if job.backbone.label in SCRATCH_LABELS:  # a model of its own: no backbone weights to name
        from radbench.protocols.segmentation import SCRATCH_DECODERS

        weights = getattr(job.config, "encoder_weights", "none") if job.backbone.label == "transunet" else "none"
        identity = {"model": SCRATCH_DECODERS[job.backbone.label], "weights": weights}
    return JobInputs(inputs, preprocess, identity)


def text_inputs(unit: UnitContext, job: Job) -> JobInputs:
    """Cached image embeddings plus the backbone's text tower behind a prompt cache (zero-shot)."""
    from radbench.features.text_cache import TextEncoder

    prepared = feature_inputs(unit, job)
    prepared.inputs.text = TextEncoder(unit.unit.backbone, unit.description.identity,
                                       unit.study.feature_cache_dir / "text", unit.preprocess.image_size)
    return prepared


INPUTS: dict[str, Callable[[UnitContext, Job], JobInputs]] = {
    "features": feature_inputs, "images": image_inputs, "segmentation": segmentation_inputs,
    "features+text": text_inputs}

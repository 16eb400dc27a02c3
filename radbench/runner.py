"""Runs a study: load and check all data, then per backbone x dataset get features (cached) and run every
pending (protocol, seed) job, storing each job atomically. Finished jobs are skipped on a rerun."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from radbench import arrayfile
from radbench.backbones import BackboneConfig, BackboneDescription, describe_backbone
from radbench.backbones.layout import blocks_needed
from radbench.config import StudyConfig
from radbench.data import LabeledDataset, load_dataset
from radbench.data.base import DatasetConfigBase
from radbench.data.check import check_files
from radbench.data.fingerprint import FINGERPRINT_MEMO, digest_memo
from radbench.data.precache import precache_dataset
from radbench.data.slices import slice_view
from radbench.data.transforms import Preprocess
from radbench.device import effective_precision
from radbench.distributed import Ranks, training_together
from radbench.errors import JobFailed
from radbench.extras import check_study
from radbench.feasibility import check_blocks, shrink_notes
from radbench.features.cache import FeatureCache
from radbench.features.extract import default_workers_for_files
from radbench.features.provider import Extraction, FeatureProvider, feature_key
from radbench.jobs import SCRATCH_LABEL, plan_jobs, run_job, run_segmentation_job
from radbench.paths import job_folder
from radbench.progress import Reporter, StudyProgress
from radbench.protocols import PROTOCOLS, ProtocolInput
from radbench.protocols.base import ImageContext
from radbench.protocols.segmentation import SegmentationInput
from radbench.results import JobRecord, ResultsStore
from radbench.results.plan_records import STALE_SECONDS
from radbench.results.shards import ShardWriter, merge_shards
from radbench.results.store import check_store_file


@dataclass
class RunSummary:
    jobs_total: int = 0
    jobs_run: int = 0
    jobs_skipped: int = 0
    jobs_elsewhere: int = 0  # claimed and run by another process on the same output_dir
    failures: list[str] = field(default_factory=list)  # "backbone x dataset / protocol (seed s): error", one each
    used_feature_cache: bool = False  # any frozen-feature job planned (extracted now or read from the cache)
    extractions: list[Extraction] = field(default_factory=list)


def results_path(study: StudyConfig):
    return study.settings.output_dir / "results.sqlite"


def load_datasets(study: StudyConfig, reporter: Reporter, learn: bool = True) -> dict[str, LabeledDataset]:
    """Every dataset is read and checked before any model is built or any job runs. File fingerprints consult the
    cache folder's digest memo (a touched, unchanged file re-keys nothing); `learn=False` (plan) only reads it."""
    with digest_memo(study.feature_cache_dir / FINGERPRINT_MEMO, write=learn):
        return _load_datasets(study, reporter)


def _load_datasets(study: StudyConfig, reporter: Reporter) -> dict[str, LabeledDataset]:
    datasets = {}
    for cfg in study.datasets:
        if study.focus is not None and cfg.name != study.focus.dataset:
            continue  # an executor's unit reads its own dataset only
        dataset = load_dataset(cfg)
        sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
        task = getattr(dataset, "task", None)
        kind = task.value if task is not None else "segmentation"
        reporter.info(f"dataset {dataset.name}: {kind}, {dataset.num_classes} classes; {sizes} "
                      f"(splits: {dataset.split_origin})")
        for note in dataset.notes:
            reporter.info(f"  note: {note}")
        if task is not None:
            for split, message in undefined_auroc(dataset).items():
                reporter.warn(f"dataset {dataset.name}: the {split} split {message}: its AUROC is undefined (stored as "
                              "missing, with this reason)" + ("; hyperparameters are then chosen on the first "
                                                              "candidate" if split == "val" else ""))
        datasets[cfg.name] = dataset
        for entry in study.protocols:
            spec = PROTOCOLS.get(entry.type)
            if spec.check is not None and (spec.inputs == "segmentation") == (kind == "segmentation") \
                    and not study.shrunk:  # a shrunk study drops what its data cannot serve (feasibility.py)
                spec.check(entry.config, dataset, study.settings.seeds)
    return datasets


def undefined_auroc(dataset: LabeledDataset) -> dict[str, str]:
    """Per split, why AUROC cannot be computed on it: a single class present (single-label), or classes with
    only one label value (multi-label)."""
    out = {}
    for name, split in dataset.splits.items():
        if dataset.task.single_label:
            present = sorted({int(c) for c in split.labels})
            if len(present) < 2:
                out[name] = f"holds one class only ({', '.join(dataset.class_names[c] for c in present) or 'none'})"
        else:
            targets = dataset.targets(name)
            flat = [dataset.class_names[c] for c in range(targets.shape[1])
                    if len(np.unique(targets[~np.isnan(targets[:, c]), c])) < 2]
            if len(flat) == targets.shape[1]:
                out[name] = "has one label value for every class"
    return out


def file_workers(settings) -> int:
    """Data-loading workers for images decoded from files: the study's `num_workers`, else by CPU count."""
    return default_workers_for_files() if settings.num_workers is None else settings.num_workers


def preprocess_for(study: StudyConfig, backbone: BackboneConfig, description: BackboneDescription,
                   dataset_cfg: DatasetConfigBase) -> Preprocess:
    norm = description.normalisation
    return Preprocess(
        image_size=backbone.image_size or study.settings.image_size,
        mode=dataset_cfg.resize or study.settings.resize,
        mean=tuple(norm.mean), std=tuple(norm.std), interpolation=norm.interpolation,
    )


def run_study(study: StudyConfig, reporter: Reporter | None = None, extract_only: bool = False,
              repair: bool = True, store: ResultsStore | None = None, fail_fast: bool = False) -> RunSummary:
    """Every (backbone, dataset) unit: claim it, prepare its images and features, release it; then claim and run
    its pending jobs one by one. Processes sharing the output_dir split units and jobs through the store's claims;
    a unit another process is preparing waits until the others are done. A failing job is recorded and the others
    run (`summary.failures`); `fail_fast` stops at the first instead. An executor's worker passes a
    ShardWriter as `store` (results/shards.py): it then writes shard files, never the shared SQLite file."""
    settings = study.settings
    ranks = Ranks.from_env(settings.device)  # under torchrun: extraction shared, jobs dealt out, shards merged
    reporter = reporter or Reporter()
    reporter = reporter if ranks.main else Reporter(reporter.console, quiet=True)
    arrayfile.set_repair(repair)
    if store is None:
        check_store_file(results_path(study))  # a foreign or damaged store: refused before anything is written
    check_study(study)  # optional dependencies (pip extras) the study needs, before the data is read
    datasets = load_datasets(study, reporter)  # reads only: a data error leaves no folder behind
    check_blocks(study)  # kept / frozen blocks within every backbone's depth, before any model is built
    for backbone in study.backbones:  # a damaged local checkpoint folder: one line now, not after other units
        if study.focus is None or study.focus.backbone == backbone.display_name:
            describe_backbone(backbone)
    arrayfile.check_writable(settings.output_dir)
    if ranks.main:
        reporter.attach_log(settings.output_dir / "run.log")
    if study.feature_cache_dir != settings.output_dir:
        _check_cache_dir(study.feature_cache_dir, reporter)
    with ranks.rank_zero_first():  # rank 0 reads every file once; the others find it recorded
        datasets = {cfg.name: check_files(datasets[cfg.name], cfg.on_bad_file, study.feature_cache_dir / "checked",
                                          file_workers(settings), reporter) for cfg in study.datasets
                    if cfg.name in datasets}
    if ranks.world > 1:  # ranks may sit on several nodes: they write shards, rank 0 merges them at the end
        store = ShardWriter(settings.output_dir)
    store = store or ResultsStore(results_path(study))
    device = ranks.device
    precision = effective_precision(device, settings.precision)
    provider = FeatureProvider(FeatureCache(study.feature_cache_dir, reporter.warn), device, precision,
                               settings.cache_dtype, settings.batch_size, settings.num_workers, reporter, ranks)
    summary = RunSummary()
    reporter.info(f"study {settings.name}: device {device}, precision {precision}, output {settings.output_dir}")
    units = deque((backbone, dataset_cfg) for backbone in study.backbones for dataset_cfg in study.datasets
                  if study.focus is None or study.focus.covers(backbone.display_name, dataset_cfg.name))
    if study.focus is None and ranks.main:  # an executor's unit is one part of a plan its driver wrote
        planner = store.main if isinstance(store, ShardWriter) else store  # rank 0 alone writes the plan
        planner.plan_units(settings.name, [(backbone.display_name, cfg.name) for backbone, cfg in units])
    progress = StudyProgress(sum(len([job for job in plan_jobs(study, backbone, datasets[cfg.name], "")
                                      if study.focus is None or study.focus.takes(job)]) for backbone, cfg in units))
    busy_rounds, waited_on = 0, set()
    with store.heartbeat():
        while units:
            backbone, dataset_cfg = units.popleft()
            unit_key = f"unit:{backbone.display_name}|{dataset_cfg.name}"
            if not store.claim(unit_key):  # another process is preparing it: do other units first, then wait
                units.append((backbone, dataset_cfg))
                busy_rounds += 1
                if busy_rounds >= len(units):
                    _say_waiting(store, unit_key, waited_on, reporter)
                    time.sleep(1.0)
                continue
            busy_rounds = 0
            unit = _Unit(study, backbone, datasets[dataset_cfg.name], dataset_cfg, provider, precision, reporter, ranks)
            try:
                jobs, cached = unit.prepare(store.finished_keys(), extract_only, summary)
            finally:
                store.release(unit_key)
            store.plan_jobs(backbone.display_name, dataset_cfg.name,
                            [(job.key, job.label, job.seed, job.repeat) for job in unit.jobs])
            progress.skipped(len(unit.jobs) - len(jobs))
            failed_before = len(summary.failures)
            if not extract_only:
                for number, job in enumerate(jobs):
                    # under torchrun: a job training a model runs on every rank together (each a share of every
                    # batch); a job on cached features goes to one rank (job i to rank i mod world)
                    together = ranks.world > 1 and not job.uses_features
                    if not together and number % ranks.world != ranks.rank:
                        progress.skipped(1)  # another rank's job
                        continue
                    if not store.claim(job.key):
                        progress.skipped(1)
                        summary.jobs_elsewhere += 1
                        _say_left_to(store, job.key, waited_on, reporter)
                        continue
                    started = time.perf_counter()
                    try:
                        with training_together(ranks if together else Ranks()):
                            record = unit.run(job, cached, device)
                    except Exception as error:  # recorded (status and report show it); the other jobs go on
                        line = f"{type(error).__name__}: {error}".splitlines()[0][:500]
                        store.record_failure(job.key, backbone.display_name, dataset_cfg.name, job.label, job.seed,
                                             job.repeat, line)
                        where = f"{backbone.display_name} x {dataset_cfg.name} / {job.label} (seed {job.seed})"
                        if fail_fast or ranks.world > 1:  # ranks training together must not part ways
                            raise JobFailed(f"{where} failed (recorded; the run stopped here): {line}") from error
                        summary.failures.append(f"{where}: {line}")
                        reporter.warn(f"{where} failed, recorded; the run goes on: {line}")
                        reporter.info(progress.finished(time.perf_counter() - started))
                        continue
                    finally:
                        store.release(job.key)
                    if together and not ranks.main:
                        continue  # the same model on every rank: rank 0 stores it
                    summary.jobs_run += store.save(record)
                    reporter.info(progress.finished(time.perf_counter() - started))
            if not extract_only and len(summary.failures) == failed_before:  # stored whole: earlier failures over
                store.clear_unit_failures(backbone.display_name, dataset_cfg.name,
                                          None if study.focus is None else study.focus.key)
            if not units or units[0][0] is not backbone:
                provider.release()
            ranks.barrier()  # the next unit's extraction needs every rank
    if ranks.world > 1 and ranks.main:
        merge_shards(settings.output_dir)
    summary.extractions = provider.extractions
    return summary


def _check_cache_dir(folder: Path, reporter: Reporter) -> None:
    """A cache folder that cannot be written is used as it is when it holds something (a shared, populated cache
    on a read-only mount): what is cached serves the run, and a unit that would write stops with one line."""
    try:
        arrayfile.check_writable(folder)
    except arrayfile.CacheWriteError:
        if not folder.is_dir() or not any(folder.iterdir()):
            raise
        reporter.warn(f"cache_dir {folder} cannot be written: its cached features and images are used as they are; "
                      "a unit needing anything not cached there stops with one line")


def _say_waiting(store, unit_key: str, waited_on: set[str], reporter: Reporter) -> None:
    """Once per unit: whose claim this run waits on, and when it stops waiting."""
    holder = store.claim_holder(unit_key)
    if holder is None or unit_key in waited_on:
        return
    waited_on.add(unit_key)
    reporter.info(f"waiting for {unit_key.removeprefix('unit:').replace('|', ' x ')}: another process prepares it "
                  f"({holder}); taken over if its heartbeat stops for {STALE_SECONDS:.0f} s")


def _say_left_to(store, job_key: str, said: set[str], reporter: Reporter) -> None:
    """Once per other process: this run leaves the jobs it holds to it."""
    holder = store.claim_holder(job_key)
    process = holder.split(",")[0] if holder else None
    if process is None or process in said:
        return
    said.add(process)
    reporter.info(f"jobs claimed by another process ({holder}) are left to it; the next run takes over any whose "
                  f"heartbeat stopped for {STALE_SECONDS:.0f} s")


@dataclass
class _Unit:
    """One backbone x dataset: its prepared images, features and jobs."""

    study: StudyConfig
    backbone: BackboneConfig
    raw: LabeledDataset
    dataset_cfg: DatasetConfigBase
    provider: FeatureProvider
    precision: str
    reporter: Reporter
    ranks: Ranks

    def prepared(self, size: int):
        """The dataset reading its images from the preprocessing cache at `size` (built when missing)."""
        settings = self.study.settings
        return precache_dataset(
            self.raw, replace(self.base_preprocess, image_size=size), self.study.feature_cache_dir / "preprocessed",
            settings.preprocess_dtype, settings.preprocess_cache, self.dataset_cfg.on_bad_file,
            file_workers(settings), self.reporter)

    def prepare(self, finished: set[str], extract_only: bool, summary: RunSummary):
        """Pending jobs (all jobs' features when extracting only) and the cached features they read."""
        self.description = describe_backbone(self.backbone)
        self.base_preprocess = preprocess_for(self.study, self.backbone, self.description, self.dataset_cfg)
        with self.ranks.rank_zero_first():  # every rank prepares the unit: rank 0 builds the cache first
            self.dataset, self.preprocess = self.prepared(self.base_preprocess.image_size)
        settings = self.study.settings
        self.key = feature_key(self.description, self.preprocess, self.dataset, settings.cache_dtype, self.precision)
        self.jobs = jobs = [job for job in plan_jobs(self.study, self.backbone, self.dataset, self.key)
                            if self.study.focus is None or self.study.focus.takes(job)]
        for note in shrink_notes(self.study, self.backbone, self.dataset) if self.ranks.main else ():
            self.reporter.note(note)
        pending = [job for job in jobs if job.key not in finished]
        summary.jobs_total += len(jobs)
        summary.jobs_skipped += len(jobs) - len(pending)
        self.reporter.info(f"{self.backbone.display_name} x {self.dataset.name}: {len(pending)} of {len(jobs)} jobs "
                           "to run")
        summary.used_feature_cache |= any(job.uses_features for job in jobs)
        feature_jobs = [job for job in (jobs if extract_only else pending) if job.uses_features]
        cached = None
        if feature_jobs:
            needed = max(blocks_needed(t) for job in feature_jobs for t in job.feature_types)
            cached = self.provider.get(self.backbone, self.description, self.dataset, self.preprocess, needed)
        return pending, cached

    def run(self, job, cached, device) -> JobRecord:
        study, settings, dataset = self.study, self.study.settings, self.dataset
        if job.uses_features:
            return _run_feature_job(job, cached, study=study, reporter=self.reporter, dataset=dataset,
                                    preprocess=self.preprocess, device=device)
        identity = self.description.identity
        if job.spec.inputs == "segmentation":
            # a protocol-level image_size reads images cached at that size, not upsampled from the study's
            job_dataset, job_preprocess = self.prepared(job.config.image_size or self.base_preprocess.image_size)
            inputs = SegmentationInput(
                job_dataset, job_preprocess, lambda size: self.provider.backbone(self.backbone, size), device,
                self.precision, 0 if job_dataset.splits["train"].images.in_memory else default_workers_for_files(),
                job.seed, self.reporter, study.feature_cache_dir / f"{self.key}-seg",
                _job_folder(settings, "segmentation", job, dataset), job.repeat,
                _model_description(job, dataset, job_preprocess))
            if job.backbone.label == SCRATCH_LABEL:  # trained from scratch: no backbone weights to name
                identity = {"model": "monai.networks.nets.BasicUNet", "weights": "none"}
            return run_segmentation_job(study, job, inputs, self.reporter, job_preprocess, identity)
        model = self.provider.backbone(self.backbone, self.preprocess.image_size)
        identity = {**identity, **model.weights_revision}
        in_memory = dataset.splits["train"].images.in_memory
        slices = slice_view(dataset) if dataset.volume is not None else None  # 3D: trained on slices
        context = ImageContext(slices.dataset if slices else dataset, self.preprocess, model, self.precision,
                               0 if in_memory and settings.num_workers is None else file_workers(settings),
                               study.feature_cache_dir / f"{self.key}-tokens", _job_folder(settings, "models", job, dataset),
                               _model_description(job, dataset, self.preprocess, weights_identity=identity), slices)
        inputs = _inputs(job, dataset, None, device, self.reporter, images=context)
        return run_job(study, job, inputs, self.reporter, self.preprocess, identity, None, None)


def _job_folder(settings, kind: str, job, dataset) -> Path:
    return job_folder(settings.output_dir, kind, job.backbone.display_name, dataset.name, job.label, job.seed,
                      job.repeat)


def _model_description(job, dataset, preprocess: Preprocess, **extra) -> dict:
    """What a saved model records about itself: its backbone entry, the data and protocol, the preprocessing."""
    return {"backbone": {**job.backbone.model_dump(mode="json"), "label": job.backbone.display_name},
            "dataset": dataset.name, "protocol": job.label, "seed": job.seed, "preprocess": preprocess.identity(),
            **extra}


def _run_feature_job(job, cached, *, study, reporter, dataset, preprocess, device) -> JobRecord:
    manifest = cached.manifest
    images = sum(split["n"] for split in manifest["splits"].values())
    costs = {"backbone_params": float(manifest.get("backbone_params", 0)),
             "infer_ms_per_image": 1000 * sum(manifest.get("extract_seconds", {}).values()) / max(1, images)}
    inputs = _inputs(job, dataset, cached.source, device, reporter,
                     feature_types=list(dict.fromkeys(cached.layout.resolve(t) for t in job.feature_types)))
    return run_job(study, job, inputs, reporter, preprocess, manifest["backbone"], costs, cached.folder.name)



def _inputs(job, dataset, features, device, reporter, feature_types=None, images=None) -> ProtocolInput:
    return ProtocolInput(
        task=dataset.task, class_names=dataset.class_names, features=features,
        targets={name: dataset.targets(name) for name in dataset.splits},
        feature_types=feature_types or job.feature_types, selection_metric=job.selection_metric, seed=job.seed,
        device=device, reporter=reporter, dataset=dataset, repeat=job.repeat, images=images,
    )


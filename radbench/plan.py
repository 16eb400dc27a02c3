"""`radbench plan`: what a study will do, before it does it. Reads every dataset's layout and labels (the same
checks `run` makes first), describes each backbone without building it, and counts per backbone x dataset the
jobs, the images to extract, whether cached features or stored jobs already cover them, and an estimate of the
time from throughput recorded by earlier runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from radbench.backbones import describe_backbone
from radbench.config import StudyConfig
from radbench.data.precache import uses_precache
from radbench.device import effective_precision, resolve_device
from radbench.errors import DownloadError
from radbench.extras import check_study
from radbench.feasibility import check_blocks, shrink_notes
from radbench.features.provider import feature_key
from radbench.progress import Reporter
from radbench.study.checks import load_datasets
from radbench.study.plan import plan_jobs
from radbench.study.prepare import preprocess_for
from radbench.study.store import results_path


@dataclass
class UnitPlan:
    backbone: str
    dataset: str
    images: int
    jobs: int
    done: int
    feature_jobs: int
    features_cached: bool
    estimate_seconds: float | None  # extraction (frozen-feature jobs) from recorded ms per image; None: unknown
    unchecked: bool = False  # the backbone could not be described here (its jobs are not counted)
    shared: int = 0  # jobs of seed-free protocols that take another seed's result instead of computing it
    gflops: float | None = None  # set where the estimate comes from the backbone's size (never extracted here)


def dataset_lines(datasets: dict) -> list[str]:
    """Per dataset what its numbers will stand on: the task, split sizes, test patients and, per class, the test
    positives (a class with few of them gives wide intervals)."""
    import numpy as np

    lines = []
    for name, dataset in datasets.items():
        if not hasattr(dataset, "task"):  # segmentation: volumes / images per split
            sizes = ", ".join(f"{split} {len(part)}" for split, part in dataset.splits.items())
            lines.append(f"dataset {name}: segmentation, {dataset.num_classes} classes; {sizes}")
            continue
        sizes = ", ".join(f"{split} {len(part)}" for split, part in dataset.splits.items())
        test = dataset.splits["test"]
        patients = len(set(test.patient_ids))
        per_patient = " (no patient ids: each image counts as a patient)" \
            if np.array_equal(test.patient_ids, test.sample_ids) else ""
        positives = np.nansum(dataset.targets("test"), axis=0).astype(int)
        shown = ", ".join(f"{c} {n}" for c, n in zip(dataset.class_names[:8], positives[:8]))
        more = f", ... ({len(positives)} classes)" if len(positives) > 8 else ""
        lines.append(f"dataset {name}: {dataset.task.value}, {dataset.num_classes} classes; {sizes}; "
                     f"{patients} test patients{per_patient}; test positives: {shown}{more}")
    return lines


def plan_study(study: StudyConfig, reporter: Reporter, datasets_out: list | None = None) -> list[UnitPlan]:
    """Per backbone x dataset what `run` will do; `datasets_out` (a list) receives `dataset_lines`."""
    settings = study.settings
    check_study(study)  # optional dependencies (pip extras) the study needs, before any work
    check_blocks(study)  # blocks and LoRA targets: from the architecture alone, before the data is read
    datasets = load_datasets(study, reporter, learn=False)  # plan writes nothing
    if datasets_out is not None:
        datasets_out.extend(dataset_lines(datasets))
    device = resolve_device(settings.device)
    precision = effective_precision(device, settings.precision)
    finished = _finished_keys(study)
    throughput = _recorded_ms_per_image(study.feature_cache_dir)
    plans = []
    for backbone in study.backbones:
        try:
            description = describe_backbone(backbone)
        except DownloadError as error:  # e.g. a hub model's processor config, offline: the run will need it
            reporter.warn(f"backbone {backbone.display_name}: not checked ({str(error).splitlines()[0]})")
            plans += [UnitPlan(backbone.display_name, cfg.name, sum(len(s) for s in datasets[cfg.name].splits.values()),
                               0, 0, 0, False, None, unchecked=True) for cfg in study.datasets
                      if not cfg.external_only]
            continue
        for cfg in study.datasets:
            if cfg.external_only:
                continue
            dataset = datasets[cfg.name]
            preprocess = preprocess_for(study, backbone, description, cfg)
            if uses_precache(dataset, settings.preprocess_cache):
                preprocess = replace(preprocess, quantize=settings.preprocess_dtype)  # as the run will read them
            key = feature_key(description, preprocess, dataset, settings.cache_dtype, precision)
            jobs = plan_jobs(study, backbone, dataset, key)
            for note in shrink_notes(study, backbone, dataset):
                reporter.note(note)
            extra = sorted({name for job in jobs for name in job.evaluations})
            if extra and backbone is study.backbones[0]:
                reporter.note(f"dataset {cfg.name}: each job's model is also scored on {len(extra)} extra test "
                              f"set(s) ({', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}), rows of their own")
            feature_jobs = [job for job in jobs if job.uses_features]
            images = sum(len(split) for split in dataset.splits.values())
            cached = any((folder / "manifest.json").is_file() for folder in study.feature_cache_dir.glob(f"{key}-*"))
            rate = throughput.get(json.dumps(description.identity, sort_keys=True))
            sized = None
            if rate is None and feature_jobs and not cached:  # never extracted here: from its size, on a CPU
                sized = size_estimate(backbone, preprocess.image_size, device.type)
                rate = sized and sized[0]
            estimate = None if rate is None else (0.0 if cached or not feature_jobs else images * rate / 1000)
            shared = [job.shared_key for job in jobs if job.shared_key is not None]
            plans.append(UnitPlan(backbone.display_name, cfg.name, images, len(jobs),
                                  sum(finished.issuperset([job.key, *job.evaluation_keys]) for job in jobs),
                                  len(feature_jobs), cached, estimate, shared=len(shared) - len(set(shared)),
                                  gflops=sized and sized[1]))
    return plans


CPU_FLOPS_PER_SECOND = 2.2e11  # ViT-S/14 at 224 px (12.25 GFLOP) ran at 18 images/s on this project's 2-core CPU
CPU_MS_PER_IMAGE_FLOOR = 1.0  # decoding and batching, whatever the model


def size_estimate(backbone, image_size: int, device: str) -> tuple[float | None, float] | None:
    """(ms per image from the backbone's FLOPs on a CPU, or None on an accelerator; GFLOP per image), or None when
    its size cannot be known before the run."""
    from radbench.backbones.architecture import architecture

    found = architecture(backbone, image_size)
    if found is None or not found.flops_per_image:
        return None
    gflops = found.flops_per_image / 1e9
    if not device.startswith("cpu"):
        return None, gflops
    return max(CPU_MS_PER_IMAGE_FLOOR, 1000 * found.flops_per_image / CPU_FLOPS_PER_SECOND), gflops


def _finished_keys(study: StudyConfig) -> set[str]:
    path = results_path(study)
    if not path.is_file():
        return set()
    from radbench.results import ResultsStore

    return ResultsStore(path).finished_keys()


def _recorded_ms_per_image(cache_dir: Path) -> dict[str, float]:
    """Per backbone identity, the extraction time per image its cached entries recorded (any dataset, any size:
    a rough guide, which is all a plan needs)."""
    rates: dict[str, list[float]] = {}
    for path in cache_dir.glob("*/manifest.json"):
        try:
            manifest = json.loads(path.read_text())
            seconds = sum(manifest["extract_seconds"].values())
            images = sum(split["n"] for split in manifest["splits"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        identity = {k: v for k, v in manifest["backbone"].items() if k != "label"}
        if images:
            rates.setdefault(json.dumps(identity, sort_keys=True), []).append(1000 * seconds / images)
    return {k: sum(v) / len(v) for k, v in rates.items()}

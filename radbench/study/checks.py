"""Before any work: what can be checked without running a job is checked here, once, so that a bad input stops the
run in its first seconds with one line — the store file, the pip extras the study needs, every dataset read and
checked (and each protocol's feasibility on it), kept or frozen blocks and LoRA targets within each backbone,
local weights folders, writable output and cache folders, and every image file opened once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radbench import arrayfile
from radbench.backbones import describe_backbone
from radbench.config import StudyConfig
from radbench.data import LabeledDataset, load_dataset
from radbench.data.check import check_files
from radbench.data.fingerprint import FINGERPRINT_MEMO, digest_memo
from radbench.distributed import Ranks
from radbench.errors import DataError
from radbench.extras import check_study
from radbench.feasibility import check_blocks
from radbench.progress import Reporter
from radbench.protocols import PROTOCOLS
from radbench.study.prepare import precache_workers
from radbench.study.store import check_study_store


def check_before_work(study: StudyConfig, reporter: Reporter, ranks: Ranks, store_given: bool) -> dict:
    """The study's checked datasets by name (an executor's worker: its unit's one)."""
    settings = study.settings
    if not store_given:
        check_study_store(study)  # a foreign or damaged store: refused before anything is written
    check_study(study)  # optional dependencies (pip extras) the study needs, before the data is read
    from radbench.backbones.text import check_text_towers

    check_text_towers(study)  # from the config alone, before the data is read
    check_blocks(study)  # kept / frozen blocks and LoRA targets within every backbone, before any model is built
    datasets = load_datasets(study, reporter)  # reads only: a data error leaves no folder behind
    for backbone in study.backbones:  # a damaged local checkpoint folder: one line now, not after other units
        if study.focus is None or study.focus.backbone == backbone.display_name:
            describe_backbone(backbone)
    arrayfile.check_writable(settings.output_dir)
    if ranks.main:
        reporter.attach_log(settings.output_dir / "run.log")
    if study.feature_cache_dir != settings.output_dir:
        _check_cache_dir(study.feature_cache_dir, reporter)
    with ranks.rank_zero_first():  # rank 0 reads every file once; the others find it recorded
        return {cfg.name: check_files(datasets[cfg.name], cfg.on_bad_file, study.feature_cache_dir / "checked",
                                      precache_workers(settings), reporter) for cfg in study.datasets
                if cfg.name in datasets}


def load_datasets(study: StudyConfig, reporter: Reporter, learn: bool = True) -> dict[str, LabeledDataset]:
    """Every dataset is read and checked before any model is built or any job runs. File fingerprints consult the
    cache folder's digest memo (a touched, unchanged file re-keys nothing); `learn=False` (plan) only reads it."""
    with digest_memo(study.feature_cache_dir / FINGERPRINT_MEMO, write=learn):
        datasets = _load_datasets(study, reporter)
    check_shift_data(study, datasets)
    return datasets


def check_shift_data(study: StudyConfig, datasets: dict) -> None:
    """External tests' class matching and subgroup columns, on the loaded data, before any model is built."""
    from radbench.data.subgroups import MISSING
    from radbench.protocols.zero_shot import check_zero_shot
    from radbench.study.extra_tests import check_external_tests

    check_external_tests(study, datasets)
    check_zero_shot(study, datasets)
    for i, cfg in enumerate(study.datasets):
        dataset = datasets.get(cfg.name)
        if dataset is None or not getattr(cfg, "subgroups", None):
            continue
        test = dataset.splits["test"]
        for column in cfg.subgroups:
            if column not in test.groups:
                raise DataError(f"datasets[{i}] ({cfg.name}).subgroups: the {cfg.adapter} adapter has no per-sample "
                                f"metadata column {column!r}; subgroups come from table layouts (csv, nih, chexpert, "
                                "mimic_cxr)")
            if (test.groups[column] == MISSING).all():
                raise DataError(f"datasets[{i}] ({cfg.name}).subgroups: column {column!r} is empty for every one of "
                                f"the {len(test)} test samples")


def _load_datasets(study: StudyConfig, reporter: Reporter) -> dict[str, LabeledDataset]:
    datasets = {}
    needed = None
    if study.focus is not None:  # an executor's unit reads its own dataset only, and the ones it tests on
        own = next(cfg for cfg in study.datasets if cfg.name == study.focus.dataset)
        needed = {own.name, *(external.dataset for external in getattr(own, "external_tests", []))}
    for cfg in study.datasets:
        if needed is not None and cfg.name not in needed:
            continue
        dataset = load_dataset(cfg)
        sizes = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
        task = getattr(dataset, "task", None)
        kind = task.value if task is not None else "segmentation"
        reporter.info(f"dataset {dataset.name}: {kind}, {dataset.num_classes} classes; {sizes} "
                      f"(splits: {dataset.split_origin})")
        for note in dataset.notes:
            reporter.info(f"  note: {note}")
        if task is not None:
            undefined = undefined_auroc(dataset)
            if task.single_label and "train" in undefined and len(dataset.splits["train"]) and \
                    any(entry.runs_on_dataset(cfg.name) for entry in study.protocols):
                raise DataError(f"dataset {dataset.name}: the train split {undefined['train']}: nothing to learn "
                                f"from; check the label column and the splits ({dataset.split_origin})")
            for split, message in undefined.items():
                reporter.warn(f"dataset {dataset.name}: the {split} split {message}: its AUROC is undefined (stored as "
                              "missing, with this reason)" + ("; hyperparameters are then chosen on the first "
                                                              "candidate" if split == "val" else ""))
        datasets[cfg.name] = dataset
        for entry in study.protocols:
            spec = PROTOCOLS.get(entry.type)
            if spec.check is not None and (spec.inputs == "segmentation") == (kind == "segmentation") \
                    and entry.runs_on_dataset(cfg.name) and not study.shrunk:  # a shrunk study drops what its data cannot serve (feasibility.py)
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

"""Plan: a study's units (backbone x dataset) and each unit's jobs — one (protocol variant, seed, repeat) each, keyed
by a hash of everything that changes its numbers. The keys never change for a given study, so every existing store
resumes (tests/test_job_keys.py pins them)."""

from __future__ import annotations

from dataclasses import dataclass

from radbench.backbones import BackboneConfig
from radbench.config import ProtocolEntry, StudyConfig
from radbench.data import LabeledDataset
from radbench.data.segmentation import SegmentationDataset
from radbench.errors import RadbenchError
from radbench.feasibility import usable_variants
from radbench.features.cache import stable_hash
from radbench.metrics import default_selection_metric, selectable_metrics
from radbench.metrics.calibration import check_method
from radbench.protocols import PROTOCOLS, ProtocolConfigBase
from radbench.protocols.base import ProtocolSpec
from radbench.study.extra_tests import SCORES_OTHER_SETS, evaluation_key, extra_test_names


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
    evaluations: tuple[str, ...] = ()  # extra test sets its final model scores (study/extra_tests.py)
    claim_key: str | None = None  # what a process claims to run it: its key, or (stored, extra sets missing) theirs
    shared_key: str | None = None  # a seed-free protocol's jobs of every seed share it: computed once, stored each

    @property
    def run_identity(self) -> tuple:
        """(backbone, dataset, protocol, seed, repeat): the job as the store's rows name it (not its key)."""
        return self.backbone.display_name, self.dataset.name, self.label, self.seed, self.repeat

    @property
    def evaluation_keys(self) -> list[str]:
        return [evaluation_key(self.key, name) for name in self.evaluations]

    @property
    def uses_features(self) -> bool:
        """Whether the job reads cached frozen features (its protocol declares `features`, alone or with more)."""
        return "features" in self.spec.inputs.split("+")


SCRATCH_LABELS = ("scratch_unet", "transunet")  # segmentation models with their own encoder: a row of their own


def plan_jobs(study: StudyConfig, backbone: BackboneConfig, dataset, data_key: str) -> list[Job]:
    """Every (protocol variant, seed, repeat) of the protocols that apply to this dataset's kind."""
    jobs = []
    segmentation = isinstance(dataset, SegmentationDataset)
    extra_tests = () if segmentation else tuple(extra_test_names(_dataset_entry(study, dataset.name)))
    for entry in study.protocols:
        spec = PROTOCOLS.get(entry.type)
        if (spec.inputs == "segmentation") != segmentation or not entry.runs_on(backbone) or \
                not entry.runs_on_dataset(dataset.name):
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
            if getattr(variant, "decoder", None) in SCRATCH_LABELS:  # no backbone: planned once, as its own row
                if backbone is not study.backbones[0]:
                    continue
                owner = backbone.model_copy(update={"label": variant.decoder})
            label = entry.label if suffix is None else f"{entry.label}@{suffix}"
            feature_types = variant.feature_types(study.settings.features)
            seed_free = spec.seed_free(variant)
            for seed in study.settings.seeds:
                for repeat in range(spec.repeats(variant)):
                    identity = {
                        "data": data_key, "backbone": owner.display_name, "dataset": dataset.name,
                        "protocol": entry.type, "label": label,
                        "config": variant.model_dump(mode="json", exclude=_not_in_key(variant)),
                        "feature_types": feature_types, "selection_metric": metric, "seed": seed, "repeat": repeat,
                    }
                    shared = stable_hash({**identity, "seed": "any"}, length=20) if seed_free else None
                    jobs.append(Job(backbone=owner, dataset=dataset, entry=entry, spec=spec, label=label,
                                    config=variant, seed=seed, repeat=repeat, feature_types=feature_types,
                                    selection_metric=metric, key=stable_hash(identity, length=20),
                                    evaluations=extra_tests if entry.type in SCORES_OTHER_SETS else (),
                                    shared_key=shared))
    return jobs


def _dataset_entry(study: StudyConfig, name: str):
    return next((cfg for cfg in study.datasets if cfg.name == name), None)


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


@dataclass(frozen=True)
class UnitPlan:
    """One backbone x dataset: prepared once (images, features), then its jobs run."""

    backbone: BackboneConfig
    dataset_cfg: object  # DatasetConfigBase

    @property
    def key(self) -> str:
        return f"unit:{self.backbone.display_name}|{self.dataset_cfg.name}"

    @property
    def names(self) -> tuple[str, str]:
        return self.backbone.display_name, self.dataset_cfg.name


def plan_units(study: StudyConfig) -> list[UnitPlan]:
    """Every backbone x dataset of the study (an executor's worker: its one unit), backbone by backbone."""
    return [UnitPlan(backbone, cfg) for backbone in study.backbones for cfg in study.datasets
            if not getattr(cfg, "external_only", False)  # an external test set only: scored by other units' jobs
            and (study.focus is None or study.focus.covers(backbone.display_name, cfg.name))]


def unit_jobs(study: StudyConfig, unit: UnitPlan, dataset, data_key: str) -> list[Job]:
    """The unit's jobs this process plans (an executor's worker: those of its focus)."""
    return [job for job in plan_jobs(study, unit.backbone, dataset, data_key)
            if study.focus is None or study.focus.takes(job)]

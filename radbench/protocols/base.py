"""What every frozen-feature protocol receives and returns, and the shared val-selection rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Literal

import numpy as np

from radbench.data.base import Task
from radbench.features.source import FeatureSource
from radbench.metrics import classification_metrics
from radbench.progress import Reporter
from radbench.registry import Registry
from radbench.schema import FeatureTypes, MetricName, StrictModel, expand_feature_types

if TYPE_CHECKING:
    import torch


class ProtocolConfigBase(StrictModel):
    name: str | None = None  # label in results; defaults to the protocol type
    preset: str | None = None  # a seed paper's defaults (radbench.presets), filled in before validation
    # keys added after stores existed: left out of a job's key while at their default, so old stores resume
    added_later: ClassVar[tuple[str, ...]] = ("preset",)
    added_to_every_protocol: ClassVar[tuple[str, ...]] = ("preset", "calibrate")
    features: FeatureTypes | None = None  # feature types to try (chosen on val); default: the study's
    last_blocks: list[int] | None = None  # DINOv2 grid: CLS of the last n blocks, with and without mean patch
    selection_metric: MetricName | None = None  # val metric used to choose; default: the study's, else per task
    # post-hoc calibration fitted on val (metrics/calibration.py); Brier / ECE stored raw and calibrated
    calibrate: Literal["temperature", "platt"] | None = None

    def feature_types(self, default: list[str]) -> list[str]:
        return expand_feature_types(self.features, self.last_blocks) or list(default)


@dataclass
class ImageContext:
    """What image-training protocols need: the data, the preprocessing and the backbone (copied per run)."""

    dataset: object  # LabeledDataset
    preprocess: object  # Preprocess
    backbone: object  # FeatureBackbone
    precision: str
    num_workers: int
    cache_folder: Path  # for this backbone x dataset's derived arrays (e.g. frozen tokens)
    model_folder: Path | None = None  # where `save_model` writes this job's trained model
    description: dict = field(default_factory=dict)  # backbone, dataset, protocol, seed: recorded with a saved model
    slices: object = None  # a 3D dataset read slice-wise (data/slices.py: SliceView): `dataset` is its slices
    extra_images: dict = field(default_factory=dict)  # extra test set name -> its images (study/extra_tests.py)

    def item_targets(self, targets: np.ndarray, split: str) -> np.ndarray:
        """The targets of each training item of `split` (a slice carries its volume's)."""
        return targets if self.slices is None else self.slices.item_targets(targets, split)

    def per_sample(self, scores: np.ndarray, split: str) -> np.ndarray:
        """Scores of the dataset's samples from the items' scores (a volume's: the aggregate of its slices')."""
        return scores if self.slices is None else self.slices.per_volume(scores, split)


@dataclass
class ProtocolInput:
    task: Task
    class_names: tuple[str, ...]
    features: FeatureSource  # .get(feature_type, split) -> (N, D) float32; .bundle(split); .columns(feature_type)
    targets: dict[str, np.ndarray]  # split -> (N, C) float32 (one-hot, or multi-hot with NaN)
    feature_types: list[str]
    selection_metric: str
    seed: int
    device: torch.device
    reporter: Reporter
    dataset: object = None  # the LabeledDataset (patient ids, splits)
    repeat: int = 0  # index of a repeated draw (few-shot samples), 0 otherwise
    refit_splits: tuple[str, ...] = ("train", "val")  # what the chosen hyperparameters are refitted on
    images: ImageContext | None = None  # for protocols that train on images
    text: object = None  # a vision-language backbone's prompt encoder (features/text_cache.py), for zero-shot
    fit_workers: int = 1  # independent fits (a grid's points) a protocol may run side by side

    def metrics(self, split_targets: np.ndarray, scores: np.ndarray) -> tuple[dict[str, float], dict]:
        return classification_metrics(self.task, split_targets, scores, self.class_names)

    def selection_value(self, split_targets: np.ndarray, scores: np.ndarray) -> float:
        """The selection metric alone (as `metrics` computes it): what ranks a grid's candidates on val."""
        return classification_metrics(self.task, split_targets, scores, self.class_names,
                                      only=self.selection_metric)[0][self.selection_metric]

    def train_val_features(self, feature_type: str) -> np.ndarray:
        """Features of the refit set (train+val, or train alone for few-shot, where val must not add labels)."""
        return np.concatenate([self.features.get(feature_type, split) for split in self.refit_splits])

    @property
    def train_val_targets(self) -> np.ndarray:
        return np.concatenate([self.targets[split] for split in self.refit_splits])


@dataclass
class ProtocolResult:
    selected: dict  # chosen hyperparameters, including the feature type
    candidates: list[dict]  # every grid point with its val metric
    val_metrics: dict[str, float]  # chosen model, trained on train, scored on val
    test_metrics: dict[str, float]  # chosen hyperparameters, refit on train+val, scored once on test
    test_scores: np.ndarray  # (N_test, C) probabilities
    details: dict = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)  # trainable_params, train_seconds, ...
    val_scores: np.ndarray | None = None  # the chosen model's val probabilities (thresholds are chosen on them)
    # the tested model scoring another set (an external or corrupted test) by its split name: (N, C) probabilities
    predict: Callable[[str], np.ndarray] | None = None


def pick_best(values: list[float], prefer: list[float] | None = None) -> int:
    """Index of the highest val metric; NaN never wins. Ties go to the highest `prefer` (e.g. the learning rate: the
    head that trained, not one that never left its initialisation), else to the earliest candidate."""
    best, best_value = 0, -math.inf
    for index, value in enumerate(values):
        if value is not None and not math.isnan(value) and value > best_value:
            best, best_value = index, value
    if prefer is not None:
        tied = [i for i, value in enumerate(values) if value == best_value]
        best = max(tied, key=lambda i: (prefer[i], -i)) if tied else best
    return best


MIN_VAL_CASES = 10  # fewer validation patients / cases than this cannot choose between candidates reliably


def small_validation(cases: int, candidates: int) -> str | None:
    """A note for a job whose choice rested on too few validation cases (None when there was no choice to make)."""
    if candidates < 2 or cases >= MIN_VAL_CASES:
        return None
    return (f"chosen among {candidates} candidates on {cases} validation case(s), fewer than {MIN_VAL_CASES}: the "
            "choice may be noise; enlarge the val split (split_fractions) or give one value")


def tied_with_best(values: list[float], chosen: int) -> int:
    """How many candidates share the chosen one's val metric exactly (1: no tie)."""
    value = values[chosen]
    return sum(v == value for v in values) if value is not None and not math.isnan(value) else 1


def _val_cases(inputs: ProtocolInput) -> int:
    """Distinct validation patients (rows where the dataset is not at hand)."""
    split = getattr(inputs.dataset, "splits", {}).get("val")
    if split is not None and len(split) == len(inputs.targets["val"]):
        return len(set(map(str, split.patient_ids)))
    return len(inputs.targets["val"])


def finish(inputs: ProtocolInput, candidates: list[dict], chosen: int, val_scores: np.ndarray,
           test_scores: np.ndarray, details: dict) -> ProtocolResult:
    """Score the chosen candidate on val (train-only fit) and on test (train+val refit); the test scores as the store
    keeps them, so the stored metrics recompute exactly from the stored predictions."""
    from radbench.results.prediction_blobs import as_stored  # here: the results package imports pandas at load

    test_scores = as_stored(test_scores)
    val_metrics, val_notes = inputs.metrics(inputs.targets["val"], val_scores)
    test_metrics, test_notes = inputs.metrics(inputs.targets["test"], test_scores)
    details = {**details, **({"val": val_notes} if val_notes else {}), **({"test": test_notes} if test_notes else {})}
    if all(math.isnan(c["val"]) for c in candidates):
        details["selection"] = "val metric undefined for every candidate; the first was used"
    elif (tied := tied_with_best([c["val"] for c in candidates], chosen)) > 1:
        details["selection_tie"] = (f"{tied} candidates tied on val at {candidates[chosen]['val']:.4f}: val could "
                                    f"not tell them apart; chosen {candidates[chosen]['params']}")
    small = small_validation(_val_cases(inputs), len(candidates))
    if small:
        details["selection_small_val"] = small
    return ProtocolResult(candidates[chosen]["params"], candidates, val_metrics, test_metrics, test_scores, details,
                          val_scores=np.asarray(val_scores, dtype=np.float64))


def single_variant(cfg: ProtocolConfigBase) -> list[tuple[str | None, ProtocolConfigBase]]:
    return [(None, cfg)]


def one_point_per(key: str, suffix: Callable[[object], str]):
    """Variants reporting one point per value of the list `key` (shots, kept blocks, ...): each a copy of the
    config with that one value, labelled `suffix(value)`; a config whose `key` is None is one plain entry."""
    def variants(cfg: ProtocolConfigBase) -> list[tuple[str | None, ProtocolConfigBase]]:
        values = getattr(cfg, key)
        if values is None:
            return [(None, cfg)]
        return [(suffix(value), cfg.model_copy(update={key: [value]})) for value in values]

    return variants


@dataclass(frozen=True)
class ProtocolSpec:
    """`inputs`: what the run prepares for it, by name (study/prepare.py INPUTS): "features" (cached frozen
    features), "images" (trains on images) or "segmentation" (masks and dense features). `variants` splits one
    entry into separately reported points (few-shot shots, decapitation depths); `repeats` draws per seed;
    `check(config, dataset, seeds)` raises a DataError when the data cannot serve the config, before any work;
    `seed_free(config)` says the result cannot depend on the seed; `record_task` marks a protocol whose result is
    per-case metrics (stored as the job's cases, not predictions)."""

    name: str
    config: type[ProtocolConfigBase]
    run: Callable[[ProtocolConfigBase, ProtocolInput], ProtocolResult]
    description: str
    inputs: str = "features"
    variants: Callable[[ProtocolConfigBase], list[tuple[str | None, ProtocolConfigBase]]] = single_variant
    repeats: Callable[[ProtocolConfigBase], int] = lambda cfg: 1
    check: Callable[[ProtocolConfigBase, object, list[int]], None] | None = None
    # the result cannot depend on the seed (no random draw anywhere): computed once per unit, stored under each seed
    seed_free: Callable[[ProtocolConfigBase], bool] = lambda cfg: False
    # a result kept as per-case metrics (no predictions): the record's task ("segmentation", "retrieval")
    record_task: str | None = None
    headline: str | None = None  # the test metric its progress line shows (default: the selection metric)


PROTOCOLS: Registry[ProtocolSpec] = Registry("protocol")

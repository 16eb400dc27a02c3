"""Few-shot: n *patients* per class drawn from train (multi-label: n per positive class), all their images,
with a frozen-feature head (linear, kNN or logistic regression) chosen on the full val set and tested once.
The val set only chooses: it is never added to the training data (a defect of the reference code).
Each shots value is its own reported point, each repeat its own draw."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field

from radbench.data.splits import label_matrix
from radbench.errors import DataError
from radbench.features.source import FeatureSource
from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    one_point_per,
)
from radbench.schema import PositiveInt


class FewShotConfig(ProtocolConfigBase):
    shots: list[PositiveInt] = Field(default=[1, 2, 4, 8, 16], min_length=1)
    repeats: int = Field(default=5, ge=1)
    head: Literal["linear", "knn", "logreg"] = "linear"
    head_config: dict = {}  # keys of the head protocol, e.g. {epochs: 50, lr: [0.001, 0.01]}


def sample_patients(patient_ids: np.ndarray, labels01: np.ndarray, shots: int, seed: int, repeat: int,
                    class_names: tuple[str, ...]) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Indices of all images of `shots` patients per class (a patient counts for one class only) and the
    patients chosen for each class. Reproducible for (seed, repeat, shots)."""
    rng = np.random.default_rng([seed, repeat, shots])
    taken: set[str] = set()
    chosen: dict[str, list[str]] = {}
    for c in np.argsort(labels01.sum(0)):  # rarest class first, so it is not starved by the others
        having = set(patient_ids[labels01[:, c] > 0])
        candidates = sorted(having - taken)
        if len(candidates) < shots:
            drawn = len(having) - len(candidates)
            why = (f"; {drawn} of them were drawn for rarer classes first (a patient counts for one class only), "
                   f"leaving {len(candidates)}" if drawn else "")
            raise DataError(f"few-shot: class {class_names[c]!r} has {len(having)} training patients{why}, "
                            f"fewer than {shots} shots")
        picked = list(rng.choice(candidates, size=shots, replace=False))
        chosen[class_names[c]] = picked
        taken.update(picked)
    return np.flatnonzero(np.isin(patient_ids, list(taken))), chosen


def _train_labels(dataset):
    train = dataset.splits["train"]
    return train, label_matrix(dataset.task, train.labels, dataset.num_classes)  # missing labels count as absent


def check_few_shot(cfg: FewShotConfig, dataset, seeds: list[int]) -> None:
    """Every draw of the largest n must find n patients per class: fail before extraction, not halfway."""
    train, labels01 = _train_labels(dataset)
    problem = _draw_problem(train, labels01, max(cfg.shots), cfg.repeats, seeds, dataset.class_names)
    if problem is None:
        return
    feasible = next((n for n in range(max(cfg.shots) - 1, 0, -1)
                     if _draw_problem(train, labels01, n, cfg.repeats, seeds, dataset.class_names) is None), 0)
    fix = (f"lower the shots to at most {feasible}" if feasible else
           "this train split cannot give one patient to every class")
    limited = any(note.startswith("train limited to") for note in dataset.notes)
    raise DataError(f"dataset {dataset.name!r}: {problem} (largest of few_shot shots {cfg.shots}); {fix}"
                    + ("; or raise the dataset's train `limit`" if limited else "")) from None


def _draw_problem(train, labels01, shots: int, repeats: int, seeds: list[int], class_names) -> str | None:
    for seed in seeds:
        for repeat in range(repeats):
            try:
                sample_patients(train.patient_ids, labels01, shots, seed, repeat, class_names)
            except DataError as error:
                return str(error)
    return None


def run_few_shot(cfg: FewShotConfig, inputs: ProtocolInput) -> ProtocolResult:
    (shots,) = cfg.shots
    train, labels01 = _train_labels(inputs.dataset)
    indices, chosen = sample_patients(train.patient_ids, labels01, shots, inputs.seed, inputs.repeat,
                                      inputs.class_names)
    base = inputs.features
    subset = FeatureSource(lambda split: base.bundle(split)[indices] if split == "train" else base.bundle(split),
                           base.columns)
    targets = {**inputs.targets, "train": inputs.targets["train"][indices]}
    head = PROTOCOLS.get(cfg.head)
    head_cfg = head.config.model_validate(cfg.head_config)
    few = replace(inputs, features=subset, targets=targets, refit_splits=("train",))
    result = head.run(head_cfg, few)
    result.details.update({"shots": shots, "repeat": inputs.repeat, "train_images": int(len(indices)),
                           "patients_per_class": chosen})
    return result


PROTOCOLS.add("few_shot", ProtocolSpec(
    "few_shot", FewShotConfig, run_few_shot, "n patients per class, frozen-feature head, one point per n",
    variants=one_point_per("shots", lambda n: f"{n}shot"), repeats=lambda cfg: cfg.repeats, check=check_few_shot))

"""Extra test sets of a unit: other datasets' test splits (`external_tests`) and the unit's own test split under
acquisition shifts (`corruptions`). The job's final model — chosen on val, refit, unchanged — scores each one;
train and val never see them. Each becomes its own stored row, `<protocol>@external:<dataset>` or
`<protocol>@corrupt:<kind>:<severity>`, with predictions and patient ids, so every report statistic applies.

Frozen-feature jobs read each set's cached features: an external dataset is extracted whole at its own
preprocessing (its own unit then finds it cached), a corrupted test split once per corruption and severity."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from radbench.data.base import LabeledDataset, Task, labels_to_targets
from radbench.data.class_match import match_classes
from radbench.data.corruptions import CORRUPTION_VERSION, CorruptedImages
from radbench.data.shifts import parse_corruption
from radbench.features.cache import stable_hash
from radbench.features.source import FeatureSource

# protocols whose final model can score other images: frozen-feature heads and end-to-end training
SCORES_OTHER_SETS = ("knn", "linear", "logreg", "few_shot", "decapitation", "finetune", "lora", "bitfit",
                     "progressive_freezing", "transformer_head", "zero_shot")


def extra_test_names(dataset_cfg) -> list[str]:
    """The extra test sets a classification dataset entry asks for, by name."""
    names = [external.name for external in getattr(dataset_cfg, "external_tests", [])]
    corruptions = getattr(dataset_cfg, "corruptions", None)
    return names + (corruptions.names() if corruptions else [])


def evaluation_key(job_key: str, name: str) -> str:
    return stable_hash({"job": job_key, "test": name}, length=20)


@dataclass
class ExtraTest:
    """One extra test set, ready to score: its images (and features), and how its labels meet the model's classes."""

    name: str
    kind: str  # "external" or "corruption"
    dataset: LabeledDataset  # holds the samples (an external dataset at this unit's preprocessing; a corrupted test)
    splits: tuple[str, ...]  # the splits of `dataset` that form this test set
    task: Task  # of the evaluation
    class_names: tuple[str, ...]
    columns: np.ndarray  # the model's score column for each evaluated class
    targets: np.ndarray  # (N, K) targets of the evaluated classes
    details: dict  # what the stored row says about the set
    groups_dataset: str  # whose sample metadata (subgroups) applies
    preprocess: object = None
    features: object = None  # CachedFeatures, when frozen-feature jobs need them
    _bundle: np.ndarray | None = field(default=None, repr=False)  # the features, read once for every job

    @property
    def sample_ids(self) -> np.ndarray:
        return np.concatenate([self.dataset.splits[s].sample_ids for s in self.splits])

    @property
    def patient_ids(self) -> np.ndarray:
        return np.concatenate([self.dataset.splits[s].patient_ids for s in self.splits])

    def images(self):
        from radbench.training.loop import ConcatImages

        parts = [self.dataset.splits[s].images for s in self.splits]
        return parts[0] if len(parts) == 1 else ConcatImages(*parts)

    def bundle(self) -> np.ndarray:
        if self._bundle is None:
            self._bundle = np.concatenate([np.asarray(self.features.bundle(s), dtype=np.float32) for s in self.splits])
        return self._bundle

    def scores(self, model_scores: np.ndarray) -> np.ndarray:
        """The evaluated classes' scores from the model's (N, C) probabilities."""
        return np.asarray(model_scores, dtype=np.float64)[:, self.columns]


def corrupted_test(source: LabeledDataset, name: str, modality: str, seed: int = 0) -> LabeledDataset:
    """The source's test split alone, every image corrupted on access (a new identity: its own feature key)."""
    kind, severity = parse_corruption(name)
    test = source.splits["test"]
    images = CorruptedImages(test.images, kind, severity, modality, seed)
    identity = stable_hash({"data": source.fingerprint, "corruption": kind, "severity": severity,
                            "modality": modality, "seed": seed, "version": CORRUPTION_VERSION})
    return replace(source, name=f"{source.name}~{kind}{severity}", splits={"test": replace(test, images=images)},
                   fingerprint=identity, notes=())


def corruption_set(source: LabeledDataset, preprocess, name: str, modality: str) -> ExtraTest:
    kind, severity = parse_corruption(name)
    dataset = corrupted_test(source, name, modality)
    return ExtraTest(name=name, kind="corruption", dataset=dataset, splits=("test",), task=source.task,
                     class_names=source.class_names, columns=np.arange(source.num_classes),
                     targets=source.targets("test"), groups_dataset=source.name, preprocess=preprocess,
                     details={"kind": "corruption", "corruption": kind, "severity": severity, "modality": modality})


def external_set(source: LabeledDataset, external: LabeledDataset, preprocess, config, where: str) -> ExtraTest:
    """The external dataset's test split (or every split, `split: all`) against the source's classes. Both single-
    label with the same classes one to one: the source's task; otherwise each matched class one against the rest
    (multi-label scoring of the matched findings)."""
    pairs = match_classes(source.class_names, external.class_names, config.classes, where)
    splits = tuple(external.splits) if config.split == "all" else ("test",)
    targets = np.concatenate([external.targets(s) for s in splits])
    one_to_one = (source.task.single_label and external.task.single_label and len(pairs) == source.num_classes
                  == external.num_classes and len({j for _, j in pairs}) == len(pairs))
    if one_to_one:
        order = sorted(pairs)
        columns = np.arange(source.num_classes)
        labels = np.concatenate([external.splits[s].labels for s in splits]).astype(np.int64)
        to_source = {j: i for i, j in order}
        targets = labels_to_targets(source.task, np.array([to_source[int(v)] for v in labels]), source.num_classes)
        task, class_names = source.task, source.class_names
    else:
        columns = np.array([i for i, _ in pairs])
        targets = targets[:, [j for _, j in pairs]].astype(np.float32)
        task, class_names = Task.MULTILABEL, tuple(source.class_names[i] for i, _ in pairs)
    details = {"kind": "external", "dataset": external.name, "split": config.split,
               "classes": {source.class_names[i]: external.class_names[j] for i, j in pairs},
               "scoring": "same task" if one_to_one else "each matched class against the rest"}
    return ExtraTest(name=config.name, kind="external", dataset=external, splits=splits, task=task,
                     class_names=class_names, columns=columns, targets=targets, details=details,
                     groups_dataset=external.name, preprocess=preprocess)


def check_external_tests(study, datasets: dict) -> None:
    """Class matching of every external test, from the loaded datasets (before any model is built)."""
    for i, cfg in enumerate(study.datasets):
        if cfg.name not in datasets:
            continue
        for j, external in enumerate(cfg.external_tests):
            if external.dataset in datasets:
                match_classes(datasets[cfg.name].class_names, datasets[external.dataset].class_names,
                              external.classes, f"datasets[{i}] ({cfg.name}).external_tests[{j}]")


def feature_source_with(cached, extras: dict[str, ExtraTest], feature_types: list[str]) -> FeatureSource:
    """The unit's cached features plus each extra set as a split of its own name, in the unit's bundle layout (a set
    cached with another layout is laid out like the unit's for `feature_types`, the types the jobs read)."""
    base, layout = cached.source, cached.layout

    def load(split: str) -> np.ndarray:
        if split not in extras:
            return base.bundle(split)
        extra = extras[split]
        bundle = extra.bundle()
        if extra.features.layout == layout:
            return bundle
        out = np.zeros((len(bundle), base.bundle("test").shape[1]), dtype=np.float32)
        for feature_type in feature_types:
            out[:, layout.columns(feature_type)] = bundle[:, extra.features.layout.columns(feature_type)]
        return out

    return FeatureSource(load, layout.columns)



"""Classification metrics as thin wrappers over scikit-learn.

`targets` are (N, C): one-hot for single-label tasks, multi-hot with NaN (missing) for multi-label.
`scores` are (N, C) class probabilities. Multi-label AUROC is computed per class over the samples whose
label is known, then macro-averaged; a class with a single label value in the split is skipped and named
in the returned notes, never replaced by 0.5. Macro F1 follows the same rule: a class with no positive sample
in the split has no defined F1 (it would count as 0) and is skipped and named. Multi-label data has no
`accuracy`: `label_accuracy` is the mean over classes of the per-label accuracy at a 0.5 threshold on the known
labels, stored with `label_prevalence` (the mean positive rate; all-negative predictions score 1 - prevalence)."""

from __future__ import annotations

import warnings

import numpy as np

from radbench.data.base import Task
from radbench.schema import METRIC_NAMES  # noqa: F401  (re-exported: the metrics this module computes)


def default_selection_metric(task: Task) -> str:
    return "kappa" if task is Task.ORDINAL else "auroc"


def selectable_metrics(task: Task) -> tuple[str, ...]:
    """The metrics computed for a task, by which a protocol can choose hyperparameters."""
    if task is Task.MULTILABEL:
        return ("auroc", "f1_macro", "label_accuracy")
    return ("auroc", "accuracy", "balanced_accuracy", "recall", "f1_macro",
            *(("kappa",) if task is Task.ORDINAL else ()))


def classification_metrics(
    task: Task, targets: np.ndarray, scores: np.ndarray, class_names: tuple[str, ...], only: str | None = None
) -> tuple[dict[str, float], dict]:
    """Returns (metrics, notes). Per-class AUROCs appear as `auroc/<class>`. `only`: that metric alone (and what
    computing it gives on the way), by the same code: what choosing among a grid's candidates needs."""
    with warnings.catch_warnings():
        # a split where some class is absent is expected in small studies; the notes say which metric it affects
        warnings.simplefilter("ignore", UserWarning)
        if task is Task.MULTILABEL:
            return _multilabel(targets, scores, class_names, only)
        return _single_label(task, targets, scores, class_names, only)


def _single_label(task: Task, targets: np.ndarray, scores: np.ndarray, class_names: tuple[str, ...],
                  only: str | None = None):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        f1_score,
        recall_score,
        roc_auc_score,
    )

    y_true = targets.argmax(1)
    y_pred = scores.argmax(1)
    labels = np.arange(len(class_names))
    present = np.unique(y_true)
    thresholded = {
        "accuracy": lambda: accuracy_score(y_true, y_pred),
        "balanced_accuracy": lambda: balanced_accuracy_score(y_true, y_pred),
        "f1_macro": lambda: f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
        # macro recall over the classes in the split (ISIC's "Rec." in Huix et al.): balanced accuracy by another
        # name, kept under the name papers use
        "recall": lambda: recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
        "kappa": lambda: cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=labels),
    }
    if only in thresholded:
        return {only: float(thresholded[only]())}, {}
    metrics = {name: float(value()) for name, value in thresholded.items() if name != "kappa" and only is None}
    notes: dict = {}
    if len(present) < len(class_names):
        notes["f1_skipped_classes"] = [class_names[c] for c in labels if c not in present]
    if len(class_names) == 2:
        metrics["auroc"] = float(roc_auc_score(y_true, scores[:, 1])) if len(present) == 2 else float("nan")
        if len(present) < 2:
            notes["auroc_skipped"] = "only one class in the split"
    else:
        per_class, skipped = {}, []
        for c, name in enumerate(class_names):
            if c in present and len(present) > 1:
                per_class[name] = float(roc_auc_score(y_true == c, scores[:, c]))
            else:
                skipped.append(name)
        metrics.update({f"auroc/{n}": v for n, v in per_class.items()})
        metrics["auroc"] = float(np.mean(list(per_class.values()))) if per_class else float("nan")  # one-vs-rest macro
        if skipped:
            notes["auroc_skipped_classes"] = skipped
    if task is Task.ORDINAL and only is None:
        metrics["kappa"] = float(thresholded["kappa"]())
    return metrics, notes


def _multilabel(targets: np.ndarray, scores: np.ndarray, class_names: tuple[str, ...], only: str | None = None):
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    metrics: dict[str, float] = {}
    aurocs, f1s, accuracies, prevalences, skipped, f1_skipped = [], [], [], [], [], []
    thresholded = only in (None, "f1_macro", "label_accuracy", "label_prevalence")
    for c, name in enumerate(class_names):
        known = ~np.isnan(targets[:, c])
        y_true = targets[known, c].astype(int)
        y_score = scores[known, c]
        if known.any() and thresholded:
            y_pred = (y_score >= 0.5).astype(int)
            accuracies.append(accuracy_score(y_true, y_pred))
            prevalences.append(float(y_true.mean()))
        if y_true.any():
            if thresholded:
                f1s.append(f1_score(y_true, y_pred, zero_division=0))
        else:
            f1_skipped.append(name)
        if only not in (None, "auroc"):
            continue
        if len(np.unique(y_true)) < 2:
            skipped.append(name)
            continue
        value = float(roc_auc_score(y_true, y_score))
        metrics[f"auroc/{name}"] = value
        aurocs.append(value)
    metrics["auroc"] = float(np.mean(aurocs)) if aurocs else float("nan")
    metrics["f1_macro"] = float(np.mean(f1s)) if f1s else float("nan")
    # not "accuracy": dominated by negatives (0.85 with macro-F1 0 on 3 NIH findings), so it is named for what it
    # is and stored with the mean prevalence beside it (predicting every label negative scores 1 - prevalence)
    metrics["label_accuracy"] = float(np.mean(accuracies)) if accuracies else float("nan")
    metrics["label_prevalence"] = float(np.mean(prevalences)) if prevalences else float("nan")
    metrics["auroc_classes"] = float(len(aurocs))
    notes = {"auroc_skipped_classes": skipped} if skipped else {}
    if f1_skipped:
        notes["f1_skipped_classes"] = f1_skipped
    return metrics, notes

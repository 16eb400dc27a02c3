"""Patient-level stratified splits, the leakage check, and stratified `limit` sampling."""

from __future__ import annotations

import numpy as np

from radbench.data.base import Split, Task
from radbench.errors import DataError


def label_matrix(task: Task, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) 0/1 matrix used for stratification; missing multi-label values count as negative here."""
    if task is Task.MULTILABEL:
        return np.nan_to_num(labels.astype(np.float64), nan=0.0).clip(0, 1)
    matrix = np.zeros((len(labels), num_classes))
    matrix[np.arange(len(labels)), labels.astype(np.int64)] = 1.0
    return matrix


def stratified_patient_split(
    patient_ids: np.ndarray, labels01: np.ndarray, fractions: list[float], seed: int
) -> list[np.ndarray]:
    """Assign whole patients to len(fractions) parts, keeping every label's share close to `fractions`.

    Iterative stratification (Sechidis et al. 2011) on patients: the rarest label is placed first, each of
    its patients going to the part that still needs most of that label. Works for multi-label data."""
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(patient_ids, return_inverse=True)
    per_patient = np.zeros((len(patients), labels01.shape[1]))
    np.add.at(per_patient, inverse, labels01)
    sizes = np.bincount(inverse, minlength=len(patients)).astype(np.float64)
    fractions_arr = np.asarray(fractions, dtype=np.float64)
    need_total = fractions_arr * sizes.sum()
    need_label = fractions_arr[:, None] * per_patient.sum(0)[None, :]
    assignment = np.full(len(patients), -1)
    unassigned = np.ones(len(patients), dtype=bool)
    order_noise = rng.random(len(patients))

    def place(patient: int, preference: np.ndarray) -> None:
        # most-needed part by `preference`, then by total need, then at random
        keys = np.lexsort((rng.random(len(fractions_arr)), -need_total, -preference))
        part = keys[0]
        assignment[patient] = part
        unassigned[patient] = False
        need_total[part] -= sizes[patient]
        need_label[part] -= per_patient[patient]

    while unassigned.any():
        positives = (per_patient[unassigned] > 0).sum(0)
        candidates = np.flatnonzero(positives > 0)
        if len(candidates) == 0:
            for patient in np.flatnonzero(unassigned)[np.argsort(order_noise[unassigned])]:
                place(patient, need_total.copy())
            break
        label = candidates[np.argmin(positives[candidates])]
        members = np.flatnonzero(unassigned & (per_patient[:, label] > 0))
        for patient in members[np.argsort(order_noise[members])]:
            place(patient, need_label[:, label].copy())
    return [np.flatnonzero(np.isin(inverse, np.flatnonzero(assignment == part))) for part in range(len(fractions))]


def complete_splits(parts: dict, strata, fractions: list[float], seed: int, dataset: str) -> tuple[dict, str | None, list[str]]:
    """train/val/test from an adapter's parts: one part "all" is split by patient, a missing val or test split
    is carved from train (never from test, so test is never used for a choice); then the leakage check.
    `strata(split)` gives the (N, C) 0/1 matrix to stratify on. Returns (splits, generated origin, notes)."""
    from radbench.data.base import SPLITS

    splits, origin, notes = dict(parts), None, []
    if "all" in splits:
        whole = splits.pop("all")
        indices = stratified_patient_split(whole.patient_ids, strata(whole), fractions, seed)
        splits = {name: whole.subset(idx).renamed(name) for name, idx in zip(SPLITS, indices)}
        origin = f"generated(seed={seed}, fractions={fractions})"
    if "train" not in splits:
        raise DataError(f"dataset {dataset!r}: no training split")
    for missing in ("val", "test"):
        if missing not in splits:
            share = fractions[SPLITS.index(missing)] / (fractions[0] + fractions[SPLITS.index(missing)])
            train = splits["train"]
            rest, carved = stratified_patient_split(train.patient_ids, strata(train), [1 - share, share], seed)
            splits["train"], splits[missing] = train.subset(rest).renamed("train"), train.subset(carved).renamed(missing)
            notes.append(f"{missing} split carved from train ({len(carved)} samples, patient-level, seed {seed})")
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise DataError(f"dataset {dataset!r}: the {name} split is empty (too few samples to split)")
    check_no_leakage(splits, dataset)
    return {name: splits[name] for name in SPLITS}, origin, notes


def check_no_leakage(splits: dict[str, Split], dataset: str) -> None:
    """Fail loudly if any patient (or sample id) appears in two splits."""
    import pandas as pd

    seen: dict[str, str] = {}
    for name, split in splits.items():
        for patient in np.unique(split.patient_ids):
            other = seen.get(patient)
            if other is not None and other != name:
                raise DataError(
                    f"dataset {dataset!r}: patient {patient!r} appears in both the {other} and {name} splits "
                    "(patient-level leakage)"
                )
            seen[patient] = name
    all_ids = np.concatenate([s.sample_ids for s in splits.values()])
    if len(np.unique(all_ids)) != len(all_ids):
        duplicated = pd.Series(all_ids).value_counts().index[0]
        raise DataError(f"dataset {dataset!r}: sample id {duplicated!r} appears more than once")


def limit_indices(patient_ids: np.ndarray, labels01: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most `limit` sample indices, stratified by `labels01`, whole patients, reproducible for a seed."""
    import pandas as pd

    if len(patient_ids) <= limit:
        return np.arange(len(patient_ids))
    keep_fraction = limit / len(patient_ids)
    chosen, _ = stratified_patient_split(patient_ids, labels01, [keep_fraction, 1 - keep_fraction], seed)
    if len(chosen) > limit:  # whole patients can overshoot: drop random patients until within the limit
        rng = np.random.default_rng(seed)
        patients = patient_ids[chosen]
        counts = pd.Series(patients).value_counts()
        dropped: set[str] = set()
        total = len(chosen)
        for patient in rng.permutation(np.unique(patients)):
            if total <= limit:
                break
            dropped.add(patient)
            total -= int(counts[patient])
        chosen = chosen[~np.isin(patients, list(dropped))]
    return np.sort(chosen)


def balanced_indices(patient_ids: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Class-balanced subsample for single-label data: about limit / C samples per class, whole patients."""
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = []
    for offset, value in enumerate(classes):
        members = np.flatnonzero(labels == value)
        ones = np.ones((len(members), 1))
        chosen.append(members[limit_indices(patient_ids[members], ones, per_class, seed + offset)])
    return np.sort(np.concatenate(chosen))


def limit_split(split: Split, limit: int | None, task: Task, num_classes: int, seed: int, balance: bool = False) -> Split:
    """At most `limit` samples, stratified by label (or class-balanced), whole patients, reproducible."""
    if limit is None:
        return split
    if balance:
        if task is Task.MULTILABEL:
            raise DataError("balance: true needs a single-label task")
        return split.subset(balanced_indices(split.patient_ids, split.labels, limit, seed))
    if len(split) <= limit:
        return split
    return split.subset(limit_indices(split.patient_ids, label_matrix(task, split.labels, num_classes), limit, seed))


def check_classes_present(split: Split, task: Task, class_names: tuple[str, ...], dataset: str, limit: int | None) -> None:
    """Every class needs positive training examples; say which one is empty and why."""
    counts = label_matrix(task, split.labels, len(class_names)).sum(0)
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        reason = f" after limit={limit}" if limit else ""
        raise DataError(
            f"dataset {dataset!r}: class {empty[0]!r} has no positive samples in the {split.name} split{reason}"
        )

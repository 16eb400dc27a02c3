"""`csv` adapter: a table with an image-path column, one or many label columns, optional patient and split columns."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator

from radbench.data.base import DatasetConfigBase, FileImages, LabeledDataset, Split, Task, file_fingerprint
from radbench.data.build import assemble_dataset
from radbench.data.registry import ADAPTERS, Adapter
from radbench.errors import DataError
from radbench.schema import resolve_path

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


class CsvConfig(DatasetConfigBase):
    adapter: Literal["csv"]
    image_column: str = "path"
    label_columns: list[str] = Field(min_length=1)  # several = multi-label; one = binary/multi-class/ordinal
    patient_column: str | None = None
    split_column: str | None = None  # values train / val / test
    image_root: Path | None = None  # base of relative image paths; default: the CSV's folder
    uncertain: Literal["ignore", "ones", "zeros"] = "ignore"  # multi-label value -1 (CheXpert "uncertain")
    blank: Literal["ignore", "zeros"] = "ignore"  # multi-label empty cell: missing (masked) or negative
    separator: str = ","

    @field_validator("image_root", mode="after")
    @classmethod
    def _resolve_root(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)


def _line(index: int) -> int:
    """Line number in the file of a 0-based data row (header is line 1)."""
    return int(index) + 2


def read_table(cfg: CsvConfig) -> pd.DataFrame:
    path = cfg.path
    text_columns = [c for c in (cfg.image_column, cfg.patient_column, cfg.split_column) if c]
    try:
        table = pd.read_csv(path, sep=cfg.separator, dtype={c: str for c in text_columns}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse CSV ({str(error).strip().splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    needed = [cfg.image_column, *cfg.label_columns, *(c for c in (cfg.patient_column, cfg.split_column) if c)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} not found; columns are: {', '.join(table.columns)}")
    if table.empty:
        raise DataError(f"{path}: the table has no rows")
    return table


def _text_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = table[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise DataError(f"{path}: line {_line(np.flatnonzero(blank)[0])}: empty value in column {column!r}")
    return values.astype(str).str.strip().to_numpy()


def _image_paths(cfg: CsvConfig, table: pd.DataFrame) -> tuple[np.ndarray, tuple[Path, ...]]:
    names = _text_column(table, cfg.image_column, cfg.path)
    duplicated = pd.Series(names).duplicated()
    if duplicated.any():
        row = np.flatnonzero(duplicated)[0]
        raise DataError(f"{cfg.path}: line {_line(row)}: image {names[row]!r} is listed twice")
    root = cfg.image_root or cfg.path.parent
    paths = tuple((root / name).resolve() if not Path(name).is_absolute() else Path(name) for name in names)
    for row, image_path in enumerate(paths):
        if not image_path.is_file():
            raise DataError(f"{cfg.path}: line {_line(row)}: image file not found: {image_path}")
    return names, paths


def _multilabel(cfg: CsvConfig, table: pd.DataFrame) -> np.ndarray:
    labels = np.empty((len(table), len(cfg.label_columns)), dtype=np.float32)
    for j, column in enumerate(cfg.label_columns):
        values = pd.to_numeric(table[column], errors="coerce")
        not_numeric = values.isna() & table[column].notna() & (table[column].astype(str).str.strip() != "")
        bad = not_numeric | ~(values.isna() | values.isin([0, 1, -1]))
        if bad.any():
            row = np.flatnonzero(bad)[0]
            raise DataError(
                f"{cfg.path}: line {_line(row)}: column {column!r} has value {str(table[column].iloc[row])!r}; "
                "multi-label columns take 1, 0, -1 (uncertain) or blank"
            )
        column_values = values.to_numpy(dtype=np.float32)
        uncertain = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[cfg.uncertain]
        column_values[column_values == -1] = uncertain
        if cfg.blank == "zeros":
            column_values[np.isnan(values.to_numpy(dtype=np.float32))] = 0.0
        labels[:, j] = column_values
    return labels


def _single_label(cfg: CsvConfig, table: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    column = cfg.label_columns[0]
    raw = table[column]
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    if blank.any():
        raise DataError(
            f"{cfg.path}: line {_line(np.flatnonzero(blank)[0])}: missing label in single-label column {column!r} "
            "(only multi-label columns may have missing values)"
        )
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        if (numeric != numeric.round()).any() or (numeric < 0).any():
            row = np.flatnonzero((numeric != numeric.round()) | (numeric < 0))[0]
            raise DataError(f"{cfg.path}: line {_line(row)}: label {str(raw.iloc[row])!r} in {column!r} is not a class index")
        values = numeric.astype(np.int64).to_numpy()
        if cfg.task is Task.ORDINAL or cfg.class_names is not None:
            count = len(cfg.class_names) if cfg.class_names else int(values.max()) + 1
            if values.max() >= count:
                row = int(np.argmax(values))
                raise DataError(f"{cfg.path}: line {_line(row)}: label {values[row]} outside the {count} classes")
            return values, tuple(str(i) for i in range(count))
        classes = np.unique(values)
        return np.searchsorted(classes, values), tuple(str(c) for c in classes)
    if cfg.task is Task.ORDINAL:
        row = np.flatnonzero(numeric.isna())[0]
        raise DataError(f"{cfg.path}: line {_line(row)}: ordinal labels must be integers, got {str(raw.iloc[row])!r}")
    text = raw.astype(str).str.strip().to_numpy()
    if cfg.class_names is not None:
        unknown = ~np.isin(text, cfg.class_names)
        if unknown.any():
            row = np.flatnonzero(unknown)[0]
            raise DataError(f"{cfg.path}: line {_line(row)}: label {text[row]!r} is not one of class_names")
        classes = np.array(cfg.class_names)
        return np.array([cfg.class_names.index(t) for t in text]), tuple(classes)
    classes = np.unique(text)
    return np.searchsorted(classes, text), tuple(classes)


def _task(cfg: CsvConfig, num_classes: int) -> Task:
    if len(cfg.label_columns) > 1:
        if cfg.task not in (None, Task.MULTILABEL):
            raise DataError(f"dataset {cfg.name!r}: {len(cfg.label_columns)} label columns mean a multilabel task, not {cfg.task.value}")
        return Task.MULTILABEL
    if cfg.task is Task.MULTILABEL:
        return Task.MULTILABEL
    if cfg.task is Task.BINARY and num_classes > 2:
        raise DataError(f"dataset {cfg.name!r}: task binary but the label column has {num_classes} classes")
    return cfg.task or (Task.BINARY if num_classes <= 2 else Task.MULTICLASS)


def load_csv(cfg: CsvConfig) -> LabeledDataset:
    table = read_table(cfg)
    sample_ids, paths = _image_paths(cfg, table)
    if len(cfg.label_columns) > 1 or cfg.task is Task.MULTILABEL:
        labels, class_names = _multilabel(cfg, table), tuple(cfg.label_columns)
    else:
        labels, class_names = _single_label(cfg, table)
    task = _task(cfg, len(class_names))
    notes = []
    if cfg.patient_column:
        patients = _text_column(table, cfg.patient_column, cfg.path)
    else:
        patients = sample_ids.copy()
        notes.append("no patient_column: each image is treated as its own patient")
    whole = Split("all", sample_ids, patients, labels, FileImages(paths))
    if cfg.split_column:
        names = _text_column(table, cfg.split_column, cfg.path)
        canonical = np.array([SPLIT_ALIASES.get(n.lower(), "") for n in names])
        if (canonical == "").any():
            row = np.flatnonzero(canonical == "")[0]
            raise DataError(
                f"{cfg.path}: line {_line(row)}: split value {names[row]!r} in {cfg.split_column!r}; use train, val or test"
            )
        parts = {name: whole.subset(np.flatnonzero(canonical == name)).renamed(name)
                 for name in ("train", "val", "test") if (canonical == name).any()}
        origin = f"column {cfg.split_column!r}"
    else:
        parts, origin = {"all": whole}, "generated"
    settings = f"{cfg.label_columns}{cfg.uncertain}{cfg.blank}{cfg.patient_column}{cfg.split_column}"
    fingerprint = file_fingerprint([cfg.path, *paths], extra=settings)
    dataset = assemble_dataset(cfg, task, class_names, parts, fingerprint, origin)
    return replace(dataset, notes=(*dataset.notes, *notes))


ADAPTERS.add(
    "csv",
    Adapter("csv", CsvConfig, load_csv, "CSV manifest: image path column, label column(s), optional patient/split"),
)

"""Tables of images and labels: the `csv` adapter, and the builder every table-shaped public layout uses
(NIH ChestX-ray14, CheXpert, MIMIC-CXR-JPG, APTOS, ISIC, CBIS-DDSM)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from radbench.data.base import DatasetConfigBase, FileImages, LabeledDataset, Split, Task, file_fingerprint
from radbench.data.build import assemble_dataset
from radbench.data.registry import ADAPTERS, Adapter
from radbench.data.subgroups import read_groups
from radbench.data.volumes import FileVolumes
from radbench.errors import DataError, did_you_mean
from radbench.schema import InputPath

if TYPE_CHECKING:
    import pandas as pd

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "validate": "val", "dev": "val",
    "test": "test", "testing": "test",
}
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class TableSpec:
    """How to read images, labels, patients and splits from a table (errors name `source` and its lines)."""

    source: Path
    image_column: str
    label_columns: list[str]
    patient_column: str | None = None
    split_column: str | None = None
    image_root: Path | None = None  # default: the source file's folder
    uncertain: str = "ignore"
    blank: str = "ignore"
    missing_images: str = "error"
    id_column: str | None = None  # sample ids; default: the image column


def line_of(table: pd.DataFrame, row: int) -> int:
    """File line of a table row: the index holds 0-based data-row numbers of the source file (header = line 1)."""
    return int(table.index[row]) + 2


def text_column(table: pd.DataFrame, column: str, source: Path) -> np.ndarray:
    values = table[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise DataError(f"{source}: line {line_of(table, np.flatnonzero(blank)[0])}: empty value in column {column!r}")
    return values.astype(str).str.strip().to_numpy()


def _resolve_images(table: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, tuple[Path, ...], list[str]]:
    import pandas as pd

    names = text_column(table, spec.image_column, spec.source)
    duplicated = pd.Series(names).duplicated()
    if duplicated.any():
        row = np.flatnonzero(duplicated)[0]
        raise DataError(f"{spec.source}: line {line_of(table, row)}: image {names[row]!r} is listed twice")
    root = str(spec.image_root or spec.source.parent)
    # plain strings and os.path: pathlib costs seconds on a 100k-row table
    paths = [name if os.path.isabs(name) else os.path.join(root, name) for name in names]
    exists = np.fromiter((os.path.exists(p) for p in paths), dtype=bool, count=len(paths))
    notes = []
    if not exists.all():
        if spec.missing_images == "error":
            row = np.flatnonzero(~exists)[0]
            raise DataError(f"{spec.source}: line {line_of(table, row)}: image file not found: {paths[row]}"
                            + ("" if exists.sum() == 0 else " (set `missing_images: skip` to use the images present)"))
        if not exists.any():
            raise DataError(f"{spec.source}: none of the {len(paths)} listed images exists under {root}")
        notes.append(f"{int((~exists).sum())} listed images are not on disk and were left out (missing_images: skip)")
        table = table[exists]
        paths = [p for p, e in zip(paths, exists) if e]
    return table, tuple(Path(os.path.realpath(p)) for p in paths), notes


def multilabel_values(table: pd.DataFrame, spec: TableSpec) -> np.ndarray:
    import pandas as pd

    labels = np.empty((len(table), len(spec.label_columns)), dtype=np.float32)
    uncertain = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[spec.uncertain]
    for j, column in enumerate(spec.label_columns):
        raw = table[column]
        values = pd.to_numeric(raw, errors="coerce")
        not_numeric = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        bad = not_numeric | ~(values.isna() | values.isin([0, 1, -1]))
        if bad.any():
            row = np.flatnonzero(bad)[0]
            raise DataError(
                f"{spec.source}: line {line_of(table, row)}: column {column!r} has value {str(raw.iloc[row])!r}; "
                "multi-label columns take 1, 0, -1 (uncertain) or blank"
            )
        column_values = values.to_numpy(dtype=np.float32)
        blank = np.isnan(column_values)
        column_values[column_values == -1] = uncertain
        if spec.blank == "zeros":
            column_values[blank] = 0.0
        labels[:, j] = column_values
    return labels


def single_label_values(cfg: DatasetConfigBase, table: pd.DataFrame, spec: TableSpec) -> tuple[np.ndarray, tuple[str, ...]]:
    import pandas as pd

    column = spec.label_columns[0]
    raw = table[column]
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    where = lambda row: f"{spec.source}: line {line_of(table, row)}"  # noqa: E731
    if blank.any():
        raise DataError(f"{where(np.flatnonzero(blank)[0])}: missing label in single-label column {column!r} "
                        "(only multi-label columns may have missing values)")
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        if (numeric != numeric.round()).any() or (numeric < 0).any():
            row = np.flatnonzero((numeric != numeric.round()) | (numeric < 0))[0]
            raise DataError(f"{where(row)}: label {str(raw.iloc[row])!r} in {column!r} is not a class index")
        values = numeric.astype(np.int64).to_numpy()
        if cfg.task is Task.ORDINAL or cfg.class_names is not None:
            count = len(cfg.class_names) if cfg.class_names else int(values.max()) + 1
            if values.max() >= count:
                row = int(np.argmax(values))
                raise DataError(f"{where(row)}: label {values[row]} outside the {count} classes")
            return values, tuple(str(i) for i in range(count))
        classes = np.unique(values)
        return np.searchsorted(classes, values), tuple(str(c) for c in classes)
    if cfg.task is Task.ORDINAL:
        row = np.flatnonzero(numeric.isna())[0]
        raise DataError(f"{where(row)}: ordinal labels must be integers, got {str(raw.iloc[row])!r}")
    text = raw.astype(str).str.strip().to_numpy()
    if cfg.class_names is not None:
        unknown = ~np.isin(text, cfg.class_names)
        if unknown.any():
            row = np.flatnonzero(unknown)[0]
            raise DataError(f"{where(row)}: label {text[row]!r} is not one of class_names")
        return np.array([cfg.class_names.index(t) for t in text]), tuple(cfg.class_names)
    classes = np.unique(text)
    return np.searchsorted(classes, text), tuple(classes)


def _task(cfg: DatasetConfigBase, spec: TableSpec, num_classes: int) -> Task:
    if len(spec.label_columns) > 1:
        if cfg.task not in (None, Task.MULTILABEL):
            raise DataError(f"dataset {cfg.name!r}: {len(spec.label_columns)} label columns mean a multilabel task, "
                            f"not {cfg.task.value}")
        return Task.MULTILABEL
    if cfg.task is Task.MULTILABEL:
        return Task.MULTILABEL
    if cfg.task is Task.BINARY and num_classes > 2:
        raise DataError(f"dataset {cfg.name!r}: task binary but the label column has {num_classes} classes")
    return cfg.task or (Task.BINARY if num_classes <= 2 else Task.MULTICLASS)


def dataset_from_table(cfg: DatasetConfigBase, table: pd.DataFrame, spec: TableSpec, split_origin: str | None = None,
                       extra_files: tuple[Path, ...] = (), notes: tuple[str, ...] = ()) -> LabeledDataset:
    """Images, labels, patients and (optional) splits from a table; see TableSpec."""
    if table.empty:
        raise DataError(f"{spec.source}: no rows to use")
    table, paths, path_notes = _resolve_images(table, spec)
    is_volume = [p.name.lower().endswith(VOLUME_SUFFIXES) or p.is_dir() for p in paths]
    volumes = any(is_volume)
    if volumes and cfg.volume is None:
        row = is_volume.index(True)
        if not all(is_volume):  # a folder among image files is a mistake, not a DICOM series layout
            what = "a folder" if paths[row].is_dir() else "a 3D volume"
            raise DataError(f"{spec.source}: line {line_of(table, row)}: {paths[row]} is {what}, the other rows "
                            "are 2D images")
        raise DataError(f"{spec.source}: the images are 3D volumes ({paths[row].name}); add `volume:` settings "
                        "(axis, slices, aggregate) to the dataset")
    sample_ids = text_column(table, spec.id_column or spec.image_column, spec.source)
    if len(spec.label_columns) > 1 or cfg.task is Task.MULTILABEL:
        labels, class_names = multilabel_values(table, spec), tuple(spec.label_columns)
    else:
        labels, class_names = single_label_values(cfg, table, spec)
    if cfg.task is Task.BINARY and len(class_names) > 2 and len(spec.label_columns) == 1:
        counts = np.bincount(labels, minlength=len(class_names))
        rare = int(np.argmin(counts))  # the odd one out is most likely the typo
        row = int(np.flatnonzero(labels == rare)[0])
        raise DataError(f"{spec.source}: line {line_of(table, row)}: task binary but column "
                        f"{spec.label_columns[0]!r} has {len(class_names)} values ({', '.join(map(repr, class_names))});"
                        f" {class_names[rare]!r} occurs {counts[rare]} time(s) — a typo?")
    task = _task(cfg, spec, len(class_names))
    notes = [*notes, *path_notes]
    if spec.patient_column:
        patients = text_column(table, spec.patient_column, spec.source)
    else:
        patients = sample_ids.copy()
        notes.append("no patient column: each image is treated as its own patient")
    source = (FileVolumes(paths, cfg.intensity, cfg.volume.spacing) if volumes
              else FileImages(paths, cfg.intensity))
    whole = Split("all", sample_ids, patients, labels, source, read_groups(cfg, table, spec.source))
    if spec.split_column:
        names = text_column(table, spec.split_column, spec.source)
        canonical = np.array([SPLIT_ALIASES.get(n.lower(), "") for n in names])
        if (canonical == "").any():
            row = np.flatnonzero(canonical == "")[0]
            raise DataError(f"{spec.source}: line {line_of(table, row)}: split value {names[row]!r} in "
                            f"{spec.split_column!r}; use train, val or test")
        parts = {name: whole.subset(np.flatnonzero(canonical == name)).renamed(name)
                 for name in ("train", "val", "test") if (canonical == name).any()}
        origin = split_origin or f"column {spec.split_column!r}"
    else:
        parts, origin = {"all": whole}, "generated"
    settings = f"{spec.label_columns}{spec.uncertain}{spec.blank}{spec.patient_column}{spec.split_column}{cfg.intensity}"
    fingerprint = file_fingerprint([spec.source, *extra_files, *paths], extra=settings,
                                   tables=(spec.source, *extra_files))
    dataset = assemble_dataset(cfg, task, class_names, parts, fingerprint, origin)
    return replace(dataset, notes=(*dataset.notes, *notes))


def read_table(path: Path, separator: str = ",", text_columns: tuple[str, ...] = (),
               required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV (plain or .gz) with its header stripped of spaces; required columns checked, named in errors."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=separator, dtype={c: str for c in text_columns if c}, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot parse CSV ({str(error).strip().splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} not found{did_you_mean(missing[0], table.columns)}; "
                        f"columns are: {', '.join(table.columns)}")
    if table.empty:
        raise DataError(f"{path}: the table has no rows")
    return table


class CsvConfig(DatasetConfigBase):
    adapter: Literal["csv"]
    image_column: str = "path"
    label_columns: list[str] = Field(min_length=1)  # several = multi-label; one = binary/multi-class/ordinal
    patient_column: str | None = None
    split_column: str | None = None  # values train / val / test
    image_root: InputPath | None = None  # base of relative image paths; default: the CSV's folder
    uncertain: Literal["ignore", "ones", "zeros"] = "ignore"  # multi-label value -1 (CheXpert "uncertain")
    blank: Literal["ignore", "zeros"] = "ignore"  # multi-label empty cell: missing (masked) or negative
    missing_images: Literal["error", "skip"] = "error"
    separator: str = ","


def load_csv(cfg: CsvConfig) -> LabeledDataset:
    columns = (cfg.image_column, *cfg.label_columns, cfg.patient_column, cfg.split_column)
    table = read_table(cfg.path, cfg.separator, (cfg.image_column, cfg.patient_column, cfg.split_column),
                       tuple(c for c in columns if c))
    spec = TableSpec(cfg.path, cfg.image_column, cfg.label_columns, cfg.patient_column, cfg.split_column,
                     cfg.image_root, cfg.uncertain, cfg.blank, cfg.missing_images)
    return dataset_from_table(cfg, table, spec)


ADAPTERS.add(
    "csv",
    Adapter("csv", CsvConfig, load_csv, "CSV manifest: image path column, label column(s), optional patient/split"),
)

"""NIH ChestX-ray14 as released: Data_Entry_2017*.csv (`Finding Labels` joined by '|', `Patient ID`,
`View Position`), train_val_list.txt / test_list.txt, and PNGs anywhere below the folder (images_001/images/...).
"No Finding" is the absence of all 14 findings, never a 15th class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from radbench.data.base import DatasetConfigBase, LabeledDataset
from radbench.data.csv_table import TableSpec, dataset_from_table, line_of, read_table
from radbench.data.registry import ADAPTERS, Adapter
from radbench.data.subgroups import check_columns
from radbench.errors import DataError
from radbench.schema import InputPath

if TYPE_CHECKING:
    import pandas as pd

NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
    "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
)
LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv",
               "Data_Entry_2017.csv.gz")


class NihConfig(DatasetConfigBase):
    """`path`: the release folder (label file, lists, images below it)."""

    adapter: Literal["nih"]
    labels: str | None = None  # label file name inside `path`; default: the Data_Entry_2017 file found there
    images: InputPath | None = None  # folder searched for the PNGs (default: `path`, recursively)
    findings: list[str] = list(NIH_FINDINGS)
    views: list[str] | None = None  # e.g. [PA] to keep posteroanterior images only
    missing_images: Literal["error", "skip"] = "error"  # skip: use the images present (a partial download)


def index_images(root: Path, suffix: str = ".png") -> dict[str, str]:
    """File name -> path for every image below `root` (the release spreads them over images_0NN/images/)."""
    found: dict[str, str] = {}
    for folder, _, files in os.walk(root, followlinks=True):
        for name in files:
            if name.endswith(suffix):
                found.setdefault(name, os.path.join(folder, name))
    return found


def _label_file(cfg: NihConfig) -> Path:
    candidates = [cfg.labels] if cfg.labels else LABEL_FILES
    for name in candidates:
        if (cfg.path / name).is_file():
            return cfg.path / name
    raise DataError(f"{cfg.path}: no NIH label file ({' or '.join(candidates)})")


def _official_split(cfg: NihConfig, names: pd.Series) -> pd.Series | None:
    lists = {"train": cfg.path / "train_val_list.txt", "test": cfg.path / "test_list.txt"}
    if not all(p.is_file() for p in lists.values()):
        return None
    membership = {}
    for split, path in lists.items():
        for name in path.read_text().split():
            membership[name] = split
    return names.map(membership)


def load_nih(cfg: NihConfig) -> LabeledDataset:
    import pandas as pd

    unknown = [f for f in cfg.findings if f not in NIH_FINDINGS]
    if unknown:
        raise DataError(f"dataset {cfg.name!r}: {unknown[0]!r} is not an NIH finding ({', '.join(NIH_FINDINGS)})")
    source = _label_file(cfg)
    table = read_table(source, text_columns=("Image Index", "Patient ID"),
                       required=("Image Index", "Finding Labels", "Patient ID", "View Position"))
    check_columns(cfg, table.columns, source)  # the label file's own columns, before the frame narrows them
    findings = table["Finding Labels"].astype(str).str.split("|")
    for row, labels in enumerate(findings):
        strange = [label for label in labels if label not in NIH_FINDINGS and label != "No Finding"]
        if strange:
            raise DataError(f"{source}: line {line_of(table, row)}: unknown finding {strange[0]!r}")
    frame = pd.DataFrame({"image": table["Image Index"], "patient": table["Patient ID"]}, index=table.index)
    for finding in cfg.findings:
        frame[finding] = [float(finding in labels) for labels in findings]
    for column in cfg.subgroups:  # metadata of the label file (Patient Gender, Patient Age, View Position)
        if column in table.columns and column not in frame.columns:
            frame[column] = table[column]
    if cfg.views:
        frame = frame[table["View Position"].isin(cfg.views)]
    images = index_images(cfg.images or cfg.path)
    fallback = str(cfg.path)
    frame["path"] = [images.get(name) or os.path.join(fallback, name) for name in frame["image"]]
    split = _official_split(cfg, frame["image"])
    origin = None
    if split is not None:
        if split.isna().any():
            row = int(np.flatnonzero(split.isna())[0])
            raise DataError(f"{source}: line {line_of(frame, row)}: {frame['image'].iloc[row]} is in neither "
                            "train_val_list.txt nor test_list.txt")
        frame["split"] = split
        origin = "official lists (train_val_list.txt / test_list.txt)"
    spec = TableSpec(source, "path", list(cfg.findings), "patient", "split" if split is not None else None,
                     cfg.path, missing_images=cfg.missing_images, id_column="image")
    extra = tuple(p for p in (cfg.path / "train_val_list.txt", cfg.path / "test_list.txt") if p.is_file())
    return dataset_from_table(cfg, frame, spec, origin, extra)


ADAPTERS.add("nih", Adapter("nih", NihConfig, load_nih, "NIH ChestX-ray14 release layout (Data_Entry_2017, lists)"))

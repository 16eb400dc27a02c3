"""CheXpert (train.csv / valid.csv) and MIMIC-CXR-JPG (chexpert + split + metadata CSVs): the CheXpert
labeler's 14 observations, values 1 / 0 / -1 (uncertain) / blank (not mentioned)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from radbench.data.base import DatasetConfigBase, LabeledDataset
from radbench.data.csv_table import TableSpec, dataset_from_table, read_table
from radbench.data.registry import ADAPTERS, Adapter
from radbench.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

CHEXPERT_OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


class ChexpertLabels(DatasetConfigBase):
    labels: Literal["competition", "all"] | list[str] = "competition"  # the 5 competition labels, all 14, or a list
    uncertain: Literal["ignore", "ones", "zeros"] = "ignore"  # U-Ignore (masked), U-Ones, U-Zeros
    blank: Literal["ignore", "zeros"] = "ignore"  # "not mentioned": masked, or negative
    missing_images: Literal["error", "skip"] = "error"

    def label_columns(self) -> list[str]:
        columns = {"competition": list(COMPETITION), "all": list(CHEXPERT_OBSERVATIONS)}.get(self.labels, self.labels)
        unknown = [c for c in columns if c not in CHEXPERT_OBSERVATIONS]
        if unknown:
            raise DataError(f"dataset {self.name!r}: {unknown[0]!r} is not a CheXpert observation")
        return list(columns)


class ChexpertConfig(ChexpertLabels):
    """`path`: the folder holding train.csv and valid.csv (e.g. CheXpert-v1.0-small)."""

    adapter: Literal["chexpert"]
    frontal_only: bool = False
    valid_as: Literal["test", "val"] = "test"  # the public valid.csv; the official test set is hidden


def load_chexpert(cfg: ChexpertConfig) -> LabeledDataset:
    import pandas as pd

    columns = cfg.label_columns()
    frames = []
    for name, split in (("train.csv", "train"), ("valid.csv", cfg.valid_as)):
        table = read_table(cfg.path / name, text_columns=("Path",), required=("Path", "Frontal/Lateral", *columns))
        table["split"] = split
        table["source_row"] = table.index
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    patients = table["Path"].map(lambda p: (re.search(r"patient(\d+)", p) or [None, ""])[1])
    if (patients == "").any():
        raise DataError(f"{cfg.path}: path {table['Path'][patients == ''].iloc[0]!r} names no patientNNNNN folder")
    table["patient"] = patients
    if cfg.frontal_only:
        table = table[table["Frontal/Lateral"] == "Frontal"]
    # Path is relative to the folder above the release folder ("CheXpert-v1.0-small/train/...")
    root = cfg.path.parent
    spec = TableSpec(cfg.path / "train.csv", "Path", columns, "patient", "split", root, cfg.uncertain, cfg.blank,
                     cfg.missing_images)
    table.index = table["source_row"]
    origin = f"train.csv -> train (val carved, patient-level), valid.csv -> {cfg.valid_as}"
    return dataset_from_table(cfg, table, spec, origin, (cfg.path / "valid.csv",))


MIMIC_FILES = ("mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-metadata.csv")


class MimicConfig(ChexpertLabels):
    """`path`: the mimic-cxr-jpg/2.0.0 folder (the three CSVs, plain or .gz, and files/)."""

    adapter: Literal["mimic_cxr"]
    views: list[str] | None = None  # ViewPosition values to keep, e.g. [PA, AP]


def _mimic_csv(cfg: MimicConfig, name: str, required: tuple[str, ...]) -> tuple[pd.DataFrame, Path]:
    for candidate in (cfg.path / name, cfg.path / f"{name}.gz"):
        if candidate.is_file():
            return read_table(candidate, text_columns=("dicom_id",), required=required), candidate
    raise DataError(f"{cfg.path}: {name}(.gz) not found")


def load_mimic(cfg: MimicConfig) -> LabeledDataset:
    columns = cfg.label_columns()
    labels, labels_file = _mimic_csv(cfg, MIMIC_FILES[0], ("subject_id", "study_id", *columns))
    splits, split_file = _mimic_csv(cfg, MIMIC_FILES[1], ("dicom_id", "study_id", "subject_id", "split"))
    metadata, metadata_file = _mimic_csv(cfg, MIMIC_FILES[2], ("dicom_id", "ViewPosition"))
    splits["source_row"] = splits.index
    table = splits.merge(metadata[["dicom_id", "ViewPosition"]], on="dicom_id", how="left")
    table = table.merge(labels, on=["subject_id", "study_id"], how="inner")  # studies without labels drop out
    if cfg.views:
        table = table[table["ViewPosition"].isin(cfg.views)]
    subject = table["subject_id"].astype(int).astype(str)
    table["path"] = ("files/p" + subject.str[:2] + "/p" + subject + "/s" + table["study_id"].astype(int).astype(str)
                     + "/" + table["dicom_id"] + ".jpg")
    table["patient"] = subject
    table.index = table["source_row"]
    spec = TableSpec(split_file, "path", columns, "patient", "split", cfg.path, cfg.uncertain,
                     cfg.blank, cfg.missing_images, id_column="dicom_id")
    return dataset_from_table(cfg, table, spec, "official mimic-cxr-2.0.0-split (validate -> val)",
                              (labels_file, metadata_file))


ADAPTERS.add("chexpert", Adapter("chexpert", ChexpertConfig, load_chexpert, "CheXpert train.csv / valid.csv"))
ADAPTERS.add("mimic_cxr", Adapter("mimic_cxr", MimicConfig, load_mimic, "MIMIC-CXR-JPG 2.0.0 CSVs and files/"))

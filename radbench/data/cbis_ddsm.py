"""CBIS-DDSM: the case-description CSVs (mass / calc, train / test) point at DICOM files by
`image file path` / `cropped image file path`; pathology MALIGNANT vs BENIGN(_WITHOUT_CALLBACK).

The paths in the CSVs rarely match a TCIA download byte for byte (UIDs and 000000.dcm vs 1-1.dcm), so each
is resolved by its first folder (e.g. Mass-Training_P_00001_LEFT_CC), which is stable. A mammogram with
several abnormalities is one sample, malignant if any of them is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from radbench.data.base import DatasetConfigBase, LabeledDataset, Task
from radbench.data.csv_table import TableSpec, dataset_from_table, line_of, read_table
from radbench.data.registry import ADAPTERS, Adapter
from radbench.errors import DataError

CASE_FILES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}
PATHOLOGY = {"MALIGNANT": 1, "BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 0}


class CbisDdsmConfig(DatasetConfigBase):
    """`path`: the folder holding the case CSVs and the DICOM tree (or give `images`)."""

    adapter: Literal["cbis_ddsm"]
    abnormality: Literal["mass", "calc", "both"] = "both"
    image: Literal["full", "cropped"] = "full"  # whole mammogram, or the cropped abnormality
    images: str = "."  # DICOM tree, relative to `path`
    task: Task | None = Task.BINARY
    missing_images: Literal["error", "skip"] = "error"


def resolve_dicom(root: Path, listed: str) -> Path:
    """The CSV's path if it exists, else the single matching DICOM under its first folder."""
    listed = listed.strip().strip('"')
    exact = root / listed
    if exact.is_file():
        return exact
    folder = root / Path(listed).parts[0]
    candidates = sorted(folder.rglob("*.dcm")) if folder.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:  # cropped image and ROI mask share a folder: the crop is the smaller file
        return min(candidates, key=lambda p: p.stat().st_size) if "crop" in listed.lower() else candidates[0]
    return exact  # reported as missing, with the CSV line, by the table builder


def load_cbis(cfg: CbisDdsmConfig) -> LabeledDataset:
    import pandas as pd

    kinds = ("mass", "calc") if cfg.abnormality == "both" else (cfg.abnormality,)
    column = "image file path" if cfg.image == "full" else "cropped image file path"
    root = (cfg.path / cfg.images).resolve()
    rows = []
    for kind in kinds:
        for split in ("train", "test"):
            source = cfg.path / CASE_FILES[(kind, split)]
            table = read_table(source, text_columns=("patient_id", column),
                               required=("patient_id", "pathology", column))
            unknown = ~table["pathology"].isin(list(PATHOLOGY))
            if unknown.any():
                row = int(unknown.to_numpy().nonzero()[0][0])
                raise DataError(f"{source}: line {line_of(table, row)}: pathology {table['pathology'].iloc[row]!r} "
                                f"is not one of {', '.join(PATHOLOGY)}")
            rows.append(pd.DataFrame({
                "sample": table[column].str.strip().map(lambda p: Path(p).parts[0]),
                "listed": table[column], "patient": table["patient_id"], "split": split,
                "malignant": table["pathology"].map(PATHOLOGY), "file": source.name, "row": table.index,
            }))
    table = pd.concat(rows, ignore_index=True)
    # one sample per image: malignant if any of its abnormalities is
    grouped = table.groupby("sample", sort=False).agg(
        listed=("listed", "first"), patient=("patient", "first"), split=("split", "first"),
        malignant=("malignant", "max"), row=("row", "first"))
    grouped["path"] = [str(resolve_dicom(root, listed)) for listed in grouped["listed"]]
    grouped["sample"] = grouped.index
    grouped.index = grouped["row"]
    named = cfg.model_copy(update={"class_names": cfg.class_names or ["benign", "malignant"]})
    spec = TableSpec(cfg.path / CASE_FILES[(kinds[0], "train")], "path", ["malignant"], "patient", "split", root,
                     missing_images=cfg.missing_images, id_column="sample")
    files = tuple(cfg.path / CASE_FILES[(k, s)] for k in kinds for s in ("train", "test"))
    return dataset_from_table(named, grouped, spec, "official train / test case files (val carved from train)",
                              files[1:])


ADAPTERS.add("cbis_ddsm", Adapter("cbis_ddsm", CbisDdsmConfig, load_cbis, "CBIS-DDSM case CSVs + DICOM tree"))

"""ISIC 2019: ISIC_2019_Training_GroundTruth.csv (one-hot over MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK),
images in ISIC_2019_Training_Input/, and ISIC_2019_Training_Metadata.csv whose `lesion_id` groups the images
of one lesion (they must not straddle splits)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from radbench.data.base import DatasetConfigBase, LabeledDataset
from radbench.data.csv_table import TableSpec, dataset_from_table, line_of, read_table
from radbench.data.registry import ADAPTERS, Adapter
from radbench.errors import DataError

ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


class IsicConfig(DatasetConfigBase):
    """`path`: the folder with the ground-truth CSV, the metadata CSV and ISIC_2019_Training_Input/."""

    adapter: Literal["isic2019"]
    images: str = "ISIC_2019_Training_Input"
    missing_images: Literal["error", "skip"] = "error"


def load_isic(cfg: IsicConfig) -> LabeledDataset:
    import pandas as pd

    source = cfg.path / "ISIC_2019_Training_GroundTruth.csv"
    table = read_table(source, text_columns=("image",), required=("image", *ISIC_CLASSES))
    onehot = table[list(ISIC_CLASSES)].to_numpy(dtype=float)
    rows_bad = ~np.isclose(onehot.sum(1), 1.0) | ~np.isin(onehot, (0.0, 1.0)).all(1)
    if rows_bad.any():
        row = int(np.flatnonzero(rows_bad)[0])
        raise DataError(f"{source}: line {line_of(table, row)}: the diagnosis columns must hold exactly one 1.0")
    used = [c for c, present in zip(ISIC_CLASSES, onehot.any(0)) if present]  # UNK has no training image
    table["diagnosis"] = [ISIC_CLASSES[i] for i in onehot.argmax(1)]
    table["path"] = cfg.images + "/" + table["image"].astype(str).str.strip() + ".jpg"
    patient = None
    metadata = cfg.path / "ISIC_2019_Training_Metadata.csv"
    if metadata.is_file():
        meta = read_table(metadata, text_columns=("image", "lesion_id"), required=("image", "lesion_id"))
        lesions = dict(zip(meta["image"], meta["lesion_id"]))
        table["lesion"] = [lesions.get(i) if isinstance(lesions.get(i), str) else i for i in table["image"]]
        patient = "lesion"
    named = cfg.model_copy(update={"class_names": cfg.class_names or used})
    spec = TableSpec(source, "path", ["diagnosis"], patient, None, cfg.path, missing_images=cfg.missing_images,
                     id_column="image")
    extra = (metadata,) if metadata.is_file() else ()
    return dataset_from_table(named, pd.DataFrame(table), spec, extra_files=extra)


ADAPTERS.add("isic2019", Adapter("isic2019", IsicConfig, load_isic, "ISIC 2019 ground truth CSV (+ lesion ids)"))

"""APTOS 2019 blindness detection: train.csv (`id_code`, `diagnosis` 0-4) and train_images/<id_code>.png.
Diabetic-retinopathy grade is ordinal: scored with quadratic-weighted kappa."""

from __future__ import annotations

from typing import Literal

from radbench.data.base import DatasetConfigBase, LabeledDataset, Task
from radbench.data.csv_table import TableSpec, dataset_from_table, read_table
from radbench.data.registry import ADAPTERS, Adapter

APTOS_GRADES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")


class AptosConfig(DatasetConfigBase):
    """`path`: the competition folder (train.csv, train_images/)."""

    adapter: Literal["aptos"]
    task: Task | None = Task.ORDINAL
    missing_images: Literal["error", "skip"] = "error"


def load_aptos(cfg: AptosConfig) -> LabeledDataset:
    table = read_table(cfg.path / "train.csv", text_columns=("id_code",), required=("id_code", "diagnosis"))
    table["path"] = "train_images/" + table["id_code"].astype(str).str.strip() + ".png"
    named = cfg.model_copy(update={"class_names": cfg.class_names or list(APTOS_GRADES)})
    spec = TableSpec(cfg.path / "train.csv", "path", ["diagnosis"], None, None, cfg.path,
                     missing_images=cfg.missing_images, id_column="id_code")
    return dataset_from_table(named, table, spec)


ADAPTERS.add("aptos", Adapter("aptos", AptosConfig, load_aptos, "APTOS 2019 (train.csv, train_images/), ordinal 0-4"))

"""`radbench results` in a terminal: classification, segmentation and retrieval apart (each with its own metrics),
names wrapped but never cut, costs in their own table; `wide` shows every metric column."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.table import Table

from radbench.results.tables import COST_HEADERS, SUMMARY_METRICS, format_cell, format_cost

SEGMENTATION_METRICS = ("dice", "iou", "hd95")
NARROW = {"classification": ("auroc", "balanced_accuracy", "accuracy", "label_accuracy", "kappa"),
          "segmentation": ("dice", "hd95")}
NAME_WIDTH = 40  # a name column never narrower than its longest name (up to this): metrics shrink first


def summary_tables(data: pd.DataFrame, split: str, output_dir, wide: bool = False) -> list[Table]:
    if data.empty:
        return []
    corrupted = data.protocol.astype(str).str.contains("@corrupt:", regex=False)
    hidden = f"; {int(corrupted.sum())} corrupted-test rows: --wide" if corrupted.any() and not wide else ""
    data = data if wide else data[~corrupted]
    segmentation, retrieval = (data[m].notna() if m in data.columns else pd.Series(False, index=data.index)
                               for m in ("dice", "map"))
    tables = []
    for kind, rows in (("classification", data[~segmentation & ~retrieval]), ("segmentation", data[segmentation]),
                       ("retrieval", data[retrieval])):
        if rows.empty:
            continue
        if kind == "retrieval":  # ordered by k as metrics.retrieval.precision_k does; not imported for this, as
            # the metrics package would add 0.17 s to every `radbench results`
            precision = sorted((c for c in rows.columns if c.startswith("precision_at_") and not c.endswith("_std")),
                               key=lambda c: int(c.rsplit("_", 1)[1]))
            family = shown = ["map", *precision]
        else:
            family = [m for m in SUMMARY_METRICS if m != "map"
                      and (m in SEGMENTATION_METRICS) == (kind == "segmentation")]
            shown = family if wide else [m for m in family if m in NARROW[kind]]
        metrics = [m for m in shown if m in rows.columns  # an undefined AUROC still shows why (one class)
                   and (rows[m].notna().any() or (m == "auroc" and rows["missing"].astype(bool).any()))]
        table = _table(f"{kind}: {split} metrics (mean ± std over seeds and repeats) — {output_dir}{hidden}", rows,
                       ["runs", *metrics])
        for row in rows.itertuples(index=False):
            values = row._asdict()
            cells = [*_names(values), str(values["runs"])]
            cells += [format_cell(values[m], values[f"{m}_std"], values["runs"],
                                  values["missing"] if m == "auroc" else "")
                      + (f" {values.get('hd95_unit') or ''}".rstrip() if m == "hd95" else "") for m in metrics]
            table.add_row(*cells)
        tables.append(table)
    costs = [c for c in COST_HEADERS if c in data.columns]
    data = data[data[costs].notna().any(axis=1)] if costs else data  # extra test sets: the job's costs are its own
    if costs and not data.empty:
        table = _table("costs (mean over runs): trainable parameters, training time, inference, peak memory", data,
                       [COST_HEADERS[c] for c in costs])
        for row in data.itertuples(index=False):
            values = row._asdict()
            table.add_row(*_names(values), *(format_cost(c, values[c]) for c in costs))
        tables.append(table)
    return tables


def _names(values: dict) -> list[str]:
    protocol = f"{values['protocol']} ({values['setting']})" if values["setting"] else str(values["protocol"])
    return [str(values["backbone"]), str(values["dataset"]), protocol]


def _table(title: str, rows: pd.DataFrame, value_columns: list[str]) -> Table:
    table = Table(title=title)
    for column in ("backbone", "dataset", "protocol"):
        longest = int(np.max([len(str(v)) for v in rows[column]] + [len(column)]))
        table.add_column(column, overflow="fold", min_width=min(longest, NAME_WIDTH))
    for column in value_columns:
        table.add_column(column, justify="right")
    return table

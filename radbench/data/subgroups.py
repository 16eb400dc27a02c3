"""Subgroup columns of a dataset's table (sex, age band, view position, site, scanner): one string per sample,
numeric columns binned by `age_bins`. Missing values form their own group, "(missing)"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from radbench.errors import DataError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

MISSING = "(missing)"
MAX_LEVELS = 12  # a column with more distinct numeric values than this needs bins


def read_groups(cfg, table: pd.DataFrame, source) -> dict[str, np.ndarray]:
    """{column: values} for the dataset's `subgroups`, read from `table` (rows as the dataset keeps them)."""
    check_columns(cfg, table.columns, source)
    return {column: group_values(cfg, column, table[column]) for column in getattr(cfg, "subgroups", None) or []}


def check_columns(cfg, columns, source) -> None:
    """Every `subgroups` column is one of `columns` (of `source`, named in the error with what it has)."""
    for column in getattr(cfg, "subgroups", None) or []:
        if column not in columns:
            raise DataError(f"dataset {cfg.name!r}: subgroups: column {column!r} is not in {source}"
                            f"{did_you_mean(column, columns)}; columns are: {', '.join(map(str, columns))}")


def group_values(cfg, column: str, values: pd.Series) -> np.ndarray:
    import pandas as pd

    blank = values.isna() | (values.astype(str).str.strip() == "")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric[~blank].notna().all() and numeric[~blank].nunique() > MAX_LEVELS:
        if not cfg.age_bins:
            raise DataError(f"dataset {cfg.name!r}: subgroup column {column!r} is numeric with "
                            f"{numeric[~blank].nunique()} values; give `age_bins` (edges, e.g. [0, 40, 60, 80, 120])")
        return _binned(numeric, cfg.age_bins, blank)
    out = values.astype(str).str.strip().to_numpy(dtype=object)
    out[blank.to_numpy()] = MISSING
    return out.astype(str)


def _binned(numeric: pd.Series, edges: list[float], blank: pd.Series) -> np.ndarray:
    """Labels "40-59" for [40, 60) (integer edges), ">=80" for the last open bin; outside the edges: (missing)."""
    edges = sorted(edges)
    labels = []
    for low, high in zip(edges[:-1], edges[1:]):
        labels.append(f"{_number(low)}-{_number(high - 1)}" if float(low).is_integer() and float(high).is_integer()
                      else f"{_number(low)}-<{_number(high)}")
    index = np.searchsorted(edges, numeric.to_numpy(dtype=float), side="right") - 1
    inside = (index >= 0) & (index < len(labels)) & ~blank.to_numpy()
    out = np.full(len(numeric), MISSING, dtype=object)
    out[inside] = np.asarray(labels, dtype=object)[index[inside]]
    return out.astype(str)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

"""Subgroup columns of a dataset's table (sex, age band, view position, site, scanner): one string per sample,
numeric columns binned by `age_bins` whenever it is given (values below the first edge or at / above the last form
open-ended groups, "<40" and ">=80"). Missing values, and only they, form their own group, "(missing)"."""

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
    is_numeric = bool(numeric[~blank].notna().all()) and bool((~blank).any())
    if is_numeric and cfg.age_bins:
        return _binned(numeric, cfg.age_bins, blank)
    if is_numeric and numeric[~blank].nunique() > MAX_LEVELS:
        if not cfg.age_bins:
            raise DataError(f"dataset {cfg.name!r}: subgroup column {column!r} is numeric with "
                            f"{numeric[~blank].nunique()} values; give `age_bins` (edges, e.g. [0, 40, 60, 80, 120])")
        return _binned(numeric, cfg.age_bins, blank)
    out = values.astype(str).str.strip().to_numpy(dtype=object)
    if is_numeric:  # a few numeric levels (a site number, an age in years): written as numbers, 35 not 35.0
        out = np.array([_number(v) if not np.isnan(v) else MISSING for v in numeric.to_numpy(dtype=float)],
                       dtype=object)
    out[blank.to_numpy()] = MISSING
    return out.astype(str)


def _binned(numeric: pd.Series, edges: list[float], blank: pd.Series) -> np.ndarray:
    """Labels "40-59" for [40, 60) (integer edges), "40-<59.5" otherwise; "<0" below the first edge and ">=120" at
    or above the last (open-ended: an age outside the bins is an age, not a missing value)."""
    labels = [f"<{_number(edges[0])}"]
    for low, high in zip(edges[:-1], edges[1:]):
        labels.append(f"{_number(low)}-{_number(high - 1)}" if float(low).is_integer() and float(high).is_integer()
                      else f"{_number(low)}-<{_number(high)}")
    labels.append(f">={_number(edges[-1])}")
    index = np.searchsorted(edges, numeric.to_numpy(dtype=float), side="right")  # 0: below the first edge
    out = np.asarray(labels, dtype=object)[np.clip(index, 0, len(labels) - 1)]
    out[blank.to_numpy() | numeric.isna().to_numpy()] = MISSING
    return out.astype(str)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

"""Published numbers as data: one CSV per paper (shipped here), or a study's own CSV in the same columns, so that the
report can set each published number beside what the study measured for the same backbone x dataset x protocol x
metric (report/published.py).

Columns: source, table, row (the paper's own label), backbone (the study's backbone name or label), dataset,
protocol (the study's protocol label), metric (radbench's name), mean, std, n (runs behind the mean); optional:
image_size, classes (how many the paper scored), split (train/val/test percentages, e.g. 80/10/10).
A study names them with `reference: huix2024` (or a path, or a list of either)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radbench.errors import ConfigError, did_you_mean

REQUIRED = ("source", "table", "row", "backbone", "dataset", "protocol", "metric", "mean", "std", "n")
OPTIONAL = ("image_size", "classes", "split")
FOLDER = Path(__file__).resolve().parent
PAPERS = {  # name -> what it is (the CSV is FOLDER / f"{name}.csv")
    "huix2024": "Huix et al., Are Natural Domain Foundation Models Useful for Medical Image Classification? "
                "(WACV 2024): Tables 1, 2, 3, B.1, B.2",
}


def shipped() -> dict[str, str]:
    return dict(PAPERS)


def load_reference(name: str, base_dir: Path | None = None) -> pd.DataFrame:
    """A shipped paper by name, or a CSV file (relative to `base_dir`), checked: one ConfigError line naming the
    file and the problem."""
    if name in PAPERS:
        path = FOLDER / f"{name}.csv"
    else:
        path = Path(name) if base_dir is None or Path(name).is_absolute() else Path(base_dir) / name
        if not path.is_file():
            raise ConfigError(f"reference {name!r}: neither a shipped paper ({', '.join(PAPERS)}) nor a CSV file"
                              f"{did_you_mean(name, PAPERS)}")
    try:
        table = pd.read_csv(path, dtype={"table": str, "split": str})
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it as a CSV of published numbers ({error})") from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: published numbers need the columns {', '.join(REQUIRED)}; missing "
                          f"{', '.join(missing)}")
    for column in ("mean", "std", "n", *[c for c in ("image_size", "classes") if c in table.columns]):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column].notna() & values.isna()
        if bad.any():
            row = int(bad.idxmax()) + 2  # the header is line 1
            raise ConfigError(f"{path}: line {row}: {column} {table[column][bad.idxmax()]!r} is not a number")
        table[column] = values
    if table["mean"].isna().any():
        raise ConfigError(f"{path}: line {int(table['mean'].isna().idxmax()) + 2}: mean is empty")
    for column in OPTIONAL:
        if column not in table.columns:
            table[column] = pd.NA
    table["reference"] = name
    return table[["reference", *REQUIRED, *OPTIONAL]]

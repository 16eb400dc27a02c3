"""Tables of the report written for papers and scripts: CSV, Markdown and LaTeX (booktabs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_table(frame: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    from radbench.paths import folder_name

    folder.mkdir(parents=True, exist_ok=True)
    name = folder_name(name)  # dataset names are part of it: never a path
    csv, markdown, latex = (folder / f"{name}.{suffix}" for suffix in ("csv", "md", "tex"))
    frame.to_csv(csv, index=False)
    markdown.write_text(to_markdown(frame))
    latex.write_text(frame.to_latex(index=False, float_format="%.4f", escape=True))
    return [csv, markdown, latex]


def to_markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"

"""The page's "Pretraining" section: a `radbench pretrain` output folder's per-step log."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from radbench.report import figures
from radbench.report.html import Page


def pretraining_log(page: Page, output_dir: Path, warn) -> None:
    """A `radbench pretrain` output folder: its per-step log (losses, collapse monitors). A line torn by a kill
    during a write is skipped, with one warning."""
    path = output_dir / "log.jsonl"
    if not path.is_file():
        return
    rows, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            torn += int(bool(line.strip()))
            continue
        if isinstance(row, dict) and "step" in row and "loss" in row:
            rows.append(row)
        else:
            torn += 1
    if torn:
        warn(f"{path}: {torn} unreadable line(s) skipped (a run killed while writing its log)")
    log = pd.DataFrame(rows)
    if log.empty:
        return
    section = page.section("Pretraining")
    section.text(f"{int(log.step.max())} steps; last loss {log.loss.iloc[-1]:.4f}. dino_kl is the DINO loss less "
                 "the teacher targets' entropy (the part the student closes). Monitors: teacher entropy per image "
                 "and of the batch's mean (1 = uniform over the prototypes), feature spread (0 = collapsed).")
    page.figure(section, figures.training_log_plot(log, output_dir.name), "pretraining-log", "pretraining log")


"""Published vs this study: every published number a study names (radbench/references, `reference:`) set beside
the study's own mean and run-aware 95 % interval for the same backbone x dataset x protocol x metric (the
leaderboard's row). The verdict says whether the published mean lies inside that interval ("consistent"), above
or below it; "not comparable (why)" where the study differs from the paper in a way that moves the number (random
weights, a shrunk run, another label set, image size or split); "not run" for what the study did not run, so a
reader sees how much of the paper was covered."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

COLUMNS = ["source", "table", "row", "backbone", "dataset", "protocol", "metric", "published_mean", "published_std",
           "published_n", "mean", "ci_low", "ci_high", "interval", "runs", "difference", "verdict"]
SAME_AS = {"recall": "balanced_accuracy"}  # macro recall over the classes present is balanced accuracy
CONSISTENT, NOT_RUN = "consistent", "not run"
STUDY_BELOW, STUDY_ABOVE = "this study below the paper", "this study above the paper"  # the paper outside the CI


def published_rows(board: pd.DataFrame, jobs: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """One row per published number (COLUMNS)."""
    rows = []
    for published in references.itertuples(index=False):
        base = [published.source, published.table, published.row, published.backbone, published.dataset,
                published.protocol, published.metric, float(published.mean), _number(published.std),
                _number(published.n)]
        found, metric, missing = _board_row(board, published)
        if found is None:
            rows.append(base + [np.nan] * 4 + [0, np.nan, f"{NOT_RUN} ({missing})"])
            continue
        group = jobs[(jobs.backbone == published.backbone) & (jobs.dataset == published.dataset)
                     & (jobs.protocol == published.protocol)]
        why = _not_comparable(group, published)
        difference = float(found["mean"]) - float(published.mean)
        if why:
            verdict = f"not comparable ({why})"
        elif found.ci_low <= published.mean <= found.ci_high:
            verdict = CONSISTENT
        else:
            verdict = STUDY_BELOW if published.mean > found.ci_high else STUDY_ABOVE
        if metric != published.metric:
            verdict += f"; {published.metric} is the leaderboard's {metric}"
        rows.append(base + [float(found["mean"]), float(found.ci_low), float(found.ci_high), found.interval,
                            int(found.runs), difference, verdict])
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _board_row(board: pd.DataFrame, published) -> tuple[pd.Series | None, str, str]:
    """(the leaderboard row, the metric it holds, why there is none)."""
    if board.empty or published.backbone not in set(board.backbone):
        return None, published.metric, "backbone not in this study"
    if published.dataset not in set(board.dataset):
        return None, published.metric, "dataset not in this study"
    rows = board[(board.backbone == published.backbone) & (board.dataset == published.dataset)
                 & (board.protocol == published.protocol)]
    if rows.empty:
        return None, published.metric, "protocol not run on it"
    for metric in (published.metric, SAME_AS.get(published.metric)):
        match = rows[rows.metric == metric]
        if metric is not None and not match.empty:
            return match.iloc[0], metric, ""
    return None, published.metric, f"{published.metric} not computed"


def _not_comparable(jobs: pd.DataFrame, published) -> str:
    """Why this study's number cannot be set against the paper's ('' when it can): said for the first job."""
    if jobs.empty:
        return ""
    config = jobs.config.iloc[0]
    config = json.loads(config) if isinstance(config, str) else config
    backbone, dataset = config.get("backbone", {}), config.get("dataset", {})
    reasons = []
    if backbone.get("identity", {}).get("weights", backbone.get("weights")) == "none":
        reasons.append("random weights")
    if dataset.get("limit"):
        reasons.append(f"a shrunk run: limit {dataset['limit']}")
    classes = len(dataset.get("class_names", []))
    if pd.notna(published.classes) and classes and classes != int(published.classes):
        reasons.append(f"{classes} classes, the paper's {int(published.classes)}")
    size = config.get("preprocess", {}).get("image_size")
    if pd.notna(published.image_size) and size and abs(size - published.image_size) > 0.02 * published.image_size:
        reasons.append(f"{size} px, the paper's {int(published.image_size)}")
    split = _split_text(dataset.get("split_origin", ""))
    if isinstance(published.split, str) and published.split and split != published.split:
        reasons.append(f"split {split or dataset.get('split_origin') or 'unknown'}, the paper's {published.split}")
    return "; ".join(reasons)


def _split_text(origin: str) -> str:
    """'generated(seed=0, fractions=[0.8, 0.1, 0.1])' -> '80/10/10' ('' when the split was not drawn so)."""
    match = re.search(r"fractions=\[([^\]]*)\]", origin or "")
    if not match:
        return ""
    try:
        return "/".join(f"{100 * float(part):.0f}" for part in match.group(1).split(","))
    except ValueError:
        return ""


def summary(rows: pd.DataFrame) -> str:
    counts = {CONSISTENT: 0, STUDY_BELOW: 0, STUDY_ABOVE: 0, "not comparable": 0, NOT_RUN: 0}
    for verdict in rows.verdict:
        key = next(k for k in counts if verdict.startswith(k))
        counts[key] += 1
    run = len(rows) - counts[NOT_RUN]
    return (f"{run} of {len(rows)} published numbers were run by this study: {counts[CONSISTENT]} consistent with "
            f"it (inside its 95 % interval), {counts[STUDY_BELOW]} with this study below the paper's number, "
            f"{counts[STUDY_ABOVE]} above it, "
            f"{counts['not comparable']} not comparable; {counts[NOT_RUN]} not run.")


def section(page, board: pd.DataFrame, jobs: pd.DataFrame, references: pd.DataFrame, tables,
            deviations: dict[str, list[str]] | None = None) -> None:
    """The page's "Published vs this study" (nothing when the study names no published numbers nor deviations):
    the deviations from the paper the study names, then every published number beside the study's."""
    from radbench.report import plots
    from radbench.report.tables import write_table

    deviations = {study: items for study, items in (deviations or {}).items() if items}
    if references.empty and not deviations:
        return
    part = page.section("Published vs this study")
    for study, items in deviations.items():
        part.text(f"Study {study} differs from the paper it follows in {len(items)} named way(s) (the numbers "
                  "below are read with these in mind):")
        part.lines(items)
    if references.empty:
        return
    rows = published_rows(board, jobs, references)
    write_table(rows, tables, "published")
    part.text(summary(rows) + " Published: the paper's mean ± std over its runs (n). This study: the mean over "
              "its runs with its 95 % interval (what it covers is in the column). 'Consistent' means the published "
              "mean lies inside this study's interval; not comparable rows say what differs from the paper.")
    shown = rows[~rows.verdict.str.startswith(NOT_RUN)]
    if not shown.empty:
        figure = plots.published_scatter(shown)
        if figure is not None:
            page.figure(part, figure, "published", "published vs this study",
                        "One point per published number this study ran: published mean ± std (horizontal), this "
                        "study's mean with its 95 % interval (vertical); grey: not comparable; the diagonal is "
                        "agreement.")
    part.table(["source", "table", "paper's row", "dataset", "protocol", "metric", "published", "this study",
                "95 % CI", "verdict"],
               [[r.source, r.table, r.row, r.dataset, r.protocol, r.metric,
                 f"{r.published_mean:.3f}" + ("" if np.isnan(r.published_std) else f" ± {r.published_std:.3f}"),
                 "—" if np.isnan(r.mean) else f"{r.mean:.3f}",
                 "—" if np.isnan(r.ci_low) else f"{r.ci_low:.3f} – {r.ci_high:.3f}", r.verdict]
                for r in rows.itertuples()])

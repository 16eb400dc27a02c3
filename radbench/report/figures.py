"""Figures of the report (matplotlib, no display): each is saved as PNG and SVG under a name that says what it
shows, and embedded in the page as PNG."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


MARKERS = "osD^v<>phP*XdH8"


def palette(names) -> dict:
    """A distinct colour per name, however many: matplotlib's ten, then tab20, then evenly spaced hues."""
    plt = _pyplot()
    names = list(dict.fromkeys(names))
    if len(names) <= 10:
        return {name: f"C{i}" for i, name in enumerate(names)}
    cmap = plt.get_cmap("tab20") if len(names) <= 20 else plt.get_cmap("turbo")
    steps = np.arange(len(names)) if len(names) <= 20 else np.linspace(0.05, 0.95, len(names))
    return {name: cmap(step) for name, step in zip(names, steps)}


def markers(names) -> dict:
    """A marker per name, cycling when there are more names than shapes (colour then tells them apart)."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(dict.fromkeys(names))}


LEGEND_ROW_INCHES = 0.17


CHAR_INCHES = 0.055  # one character of an x-small legend label, with room to spare


def legend_rows(labels: list[str], width: float, rows_of: int = 6) -> tuple[int, int]:
    """(columns, rows) of a legend under a figure `width` inches wide: as many columns as fit whole labels (at
    most 4), so that no label is cut at the figure's edge."""
    longest = max((len(label) for label in labels), default=1) * CHAR_INCHES + 0.45
    fit = max(1, int(width // longest))
    columns = max(1, min(4, fit, int(np.ceil(len(labels) / rows_of))))
    return columns, int(np.ceil(len(labels) / columns))


def legend_below(figure, handles) -> None:
    """A legend under the axes (the figure is made taller by `legend_rows`' rows times LEGEND_ROW_INCHES)."""
    columns, rows = legend_rows([h.get_label() for h in handles], figure.get_figwidth())
    figure.legend(handles=handles, fontsize="x-small", loc="lower center", ncol=columns, frameon=False)
    reserved = (rows * LEGEND_ROW_INCHES + 0.2) / figure.get_figheight()
    figure.tight_layout(rect=(0, min(0.7, reserved), 1, 1))


def legend(figure, axis, inside: int = 6, **where) -> None:
    """The axis's legend inside it for a few entries; for more, below the axes with the figure grown to hold it
    (20 backbones' names would cover the data)."""
    handles, labels = axis.get_legend_handles_labels()
    if len(handles) <= inside:
        axis.legend(fontsize="small", **where)
        figure.tight_layout()
        return
    _, rows = legend_rows(labels, figure.get_figwidth())
    figure.set_figheight(figure.get_figheight() + rows * LEGEND_ROW_INCHES)
    legend_below(figure, handles)


def slug(text: str) -> str:
    """A figure's file name: lowercase, safe characters only, never starting with a dot."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower() or "figure"


def leaderboard_bars(board: pd.DataFrame, dataset: str, protocol: str, metric: str):
    """Mean over seeds per backbone with its 95 % bootstrap interval; hatched bars are significantly worse than
    the best."""
    plt = _pyplot()
    rows = board[(board.dataset == dataset) & (board.protocol == protocol) & (board.metric == metric)]
    rows = rows.sort_values("rank")
    figure, axis = plt.subplots(figsize=(max(4.0, 0.8 * len(rows) + 2), 3.2))
    low = (rows["mean"] - rows.ci_low).clip(lower=0)
    high = (rows.ci_high - rows["mean"]).clip(lower=0)
    bars = axis.bar(rows.backbone, rows["mean"], yerr=[low, high], capsize=4, color="#4c72b0")
    for bar, worse in zip(bars, rows.significantly_worse_than_best):
        if worse:
            bar.set_hatch("//")
            bar.set_facecolor("#a6bddb")
    axis.set_ylabel(f"test {metric}")
    axis.set_title(f"{dataset} / {protocol}")
    value_axis(axis, rows, metric)
    axis.tick_params(axis="x", rotation=30)
    for label in axis.get_xticklabels():
        label.set_horizontalalignment("right")
    figure.tight_layout()
    return figure


def value_axis(axis, rows: pd.DataFrame, metric: str) -> None:
    """AUROC from 0 to 1 with the chance line at 0.5 (a bar axis cut at 0.4 exaggerates differences); other
    metrics from 0 to just above the highest interval."""
    if metric == "auroc":
        axis.set_ylim(0.0, 1.0)
        axis.axhline(0.5, color="#888", linestyle="--", linewidth=1)
        axis.annotate("chance", (0.995, 0.5), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                      fontsize="x-small", color="#666")
        return
    highest = float(np.nanmax(rows.ci_high)) if len(rows) and np.isfinite(rows.ci_high).any() else 1.0
    axis.set_ylim(0.0, max(1e-9, highest * 1.05) if highest > 1 else 1.0)


def mean_rank(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean rank of each backbone over the datasets, per protocol, with its spread (std over datasets)."""
    rows = board[board.metric == metric]
    grouped = rows.groupby(["protocol", "backbone"])["rank"]
    return grouped.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "datasets"})


def ranking_plot(board: pd.DataFrame, metric: str):
    plt = _pyplot()
    ranks = mean_rank(board, metric)
    figure, axis = plt.subplots(figsize=(7.5, 0.45 * ranks.backbone.nunique() + 1.5))
    protocols = sorted(ranks.protocol.unique())
    backbones = sorted(ranks.backbone.unique())
    colours, shapes = palette(protocols), markers(protocols)
    for offset, protocol in enumerate(protocols):
        part = ranks[ranks.protocol == protocol].set_index("backbone").reindex(backbones)
        positions = np.arange(len(backbones)) + 0.5 * (offset - (len(protocols) - 1) / 2) / max(1, len(protocols))
        axis.errorbar(part["mean"], positions, xerr=part["std"].fillna(0), fmt=shapes[protocol], capsize=3,
                      color=colours[protocol], label=protocol)
    axis.set_yticks(np.arange(len(backbones)), backbones)
    axis.set_xlabel(f"mean rank over datasets ({metric}; 1 = best)")
    axis.set_ylim(len(backbones) - 0.5, -0.5)
    legend(figure, axis, inside=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


VARIANT = re.compile(r"^(?P<base>.+)@(?P<prefix>frozen)?(?P<value>\d+)(?P<unit>shot|blocks)?(?P<setting> \(.*\))?$")
CURVE_AXES = {"shot": "patients per class (shots)", "blocks": "blocks kept", "frozen": "blocks frozen"}


def curve_points(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of protocols reported per point (few_shot@4shot, decapitation@8blocks, progressive_freezing@frozen4),
    with `curve` (the protocol without the point), `x` and the axis label."""
    rows = board[board.metric == metric].copy()
    matches = rows.protocol.str.extract(VARIANT)
    rows = rows[matches.value.notna()].copy()
    matches = matches[matches.value.notna()]
    rows["curve"] = matches.base + matches.setting.fillna("")
    rows["x"] = matches.value.astype(int)
    rows["axis"] = [CURVE_AXES[p if isinstance(p, str) else u] for p, u in zip(matches.prefix, matches.unit)]
    return rows


PRETRAINED = re.compile(r"^(?P<run>.+)@step(?P<step>\d+)$")  # `radbench pretrain` checkpoints (pretrain/evaluate.py)


def pretraining_points(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of pretraining checkpoints (backbone `<run>@step<N>`) as curve points: one line per protocol, x = step."""
    rows = board[board.metric == metric]
    matches = rows.backbone.str.extract(PRETRAINED)
    keep = matches.step.notna()
    rows = rows[keep].assign(curve=matches.run[keep], x=matches.step[keep].astype(int), axis="pretraining step")
    return rows.drop(columns="backbone").rename(columns={"protocol": "backbone"})


def training_log_plot(log: pd.DataFrame, title: str):
    """A pretraining run's log: the loss and its KL part (what the student closes), and the teacher's monitors."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for column in ("loss", "dino_kl", "ibot", "koleo"):
        if column in log:
            left.plot(log.step, log[column].rolling(10, min_periods=1).mean(), label=column)
    left.set_xlabel("step")
    left.set_title("loss (10-step mean)")
    left.legend(fontsize="small")
    for column in ("teacher_entropy", "teacher_batch_entropy", "teacher_feature_std"):
        right.plot(log.step, log[column], label=column)
    right.set_xlabel("step")
    right.set_title("collapse monitors")
    right.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def curve_plot(points: pd.DataFrame, dataset: str, curve: str, metric: str, levels: pd.DataFrame | None = None):
    """Metric against shots / blocks per backbone: mean over seeds and repeats, band = 95 % bootstrap interval.
    `levels`: a flat line per backbone across the curve (zero-shot: no labelled patient), dashed, its interval dotted."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    names = sorted(set(points.backbone) | (set(levels.backbone) if levels is not None else set()))
    colours, shapes = palette(names), markers(names)
    for backbone, rows in points.groupby("backbone"):
        rows = rows.sort_values("x")
        if len(rows) == 1:  # one point is no curve: the point and its interval as an error bar
            axis.errorbar(rows.x, rows["mean"], yerr=[rows["mean"] - rows.ci_low, rows.ci_high - rows["mean"]],
                          fmt=shapes[backbone], color=colours[backbone], capsize=4, label=backbone)
            continue
        axis.plot(rows.x, rows["mean"], marker=shapes[backbone], color=colours[backbone], label=backbone)
        axis.fill_between(rows.x, rows.ci_low, rows.ci_high, alpha=0.2, color=colours[backbone])
    for row in (levels.itertuples() if levels is not None else ()):
        axis.axhline(row.mean, color=colours[row.backbone], linestyle="--", linewidth=1.2,
                     label=f"{row.backbone} {row.protocol}")
        for bound in (row.ci_low, row.ci_high):
            axis.axhline(bound, color=colours[row.backbone], linestyle=":", linewidth=0.8)
    axis.set_xlabel(points.axis.iloc[0])
    axis.set_ylabel(f"test {metric}")
    single = points.x.nunique() == 1
    axis.set_title(f"{dataset} / {curve}" + (" (one point: no curve)" if single else ""))
    if points.axis.iloc[0].startswith("patients") and not single:
        axis.set_xscale("log", base=2)
    ticks = sorted(points.x.unique())
    if len(ticks) <= 12:
        axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.minorticks_off()
    legend(figure, axis)
    return figure


def save(figure, folder: Path, name: str) -> tuple[Path, str]:
    """Write PNG and SVG; returns the PNG path and its base64 for embedding."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    buffer = io.BytesIO()
    # tight: a long title, a colour-bar label or rotated tick labels are never cut at the figure's edge
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", pad_inches=0.08)
    png.write_bytes(buffer.getvalue())  # rendered once for the file and the page
    figure.savefig(folder / f"{name}.svg", bbox_inches="tight", pad_inches=0.08)
    plt.close(figure)
    return png, base64.b64encode(buffer.getvalue()).decode()

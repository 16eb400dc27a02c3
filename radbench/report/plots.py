"""Figures from per-sample results: ROC curves, per-class AUROC heatmaps, confusion matrices, per-case Dice
distributions, accuracy against cost, frozen vs fine-tuned vs PEFT, CKA heatmaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.report.figures import (
    LEGEND_ROW_INCHES,
    _pyplot,
    legend,
    legend_below,
    legend_rows,
    markers,
    palette,
    value_axis,
)

FROZEN = ("knn", "linear", "logreg", "transformer_head")
TUNED = ("finetune", "lora", "bitfit")
COSTS = {"trainable_params": "trainable parameters", "train_seconds": "training time (s)",
         "infer_ms_per_image": "inference (ms / image)", "peak_mem_mb": "peak memory (MB)"}


def roc_curves(runs: list[tuple[str, np.ndarray, np.ndarray]], title: str):
    """One ROC curve per backbone (its first seed) of a binary test split: (backbone, y, positive scores)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    colours = palette([backbone for backbone, _, _ in runs])
    for backbone, y, scores in runs:
        false_positive, true_positive, _ = roc_curve(y, scores)
        axis.plot(false_positive, true_positive, color=colours[backbone],
                  label=f"{backbone} ({roc_auc_score(y, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title, fontsize="medium")
    legend(figure, axis, loc="lower right")
    return figure


def per_class_heatmap(table: pd.DataFrame, title: str):
    """Backbones (rows) x classes (columns) of mean test AUROC over seeds."""
    plt = _pyplot()
    labels = 0.065 * max((len(str(c)) for c in table.columns), default=4)  # rotated class names below the cells
    figure, axis = plt.subplots(figsize=(2.0 + 0.75 * table.shape[1], 1.6 + labels + 0.4 * table.shape[0]))
    image = axis.imshow(table.values, cmap="viridis", vmin=np.nanmin(table.values), vmax=np.nanmax(table.values),
                        aspect="auto")
    axis.set_xticks(range(table.shape[1]), table.columns, rotation=40, ha="right")
    axis.set_yticks(range(table.shape[0]), table.index)
    for (i, j), value in np.ndenumerate(table.values):
        if np.isfinite(value):  # dark text on the light (yellow) end of viridis, white on the dark end
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small",
                      color="black" if dark else "white")
    figure.colorbar(image, ax=axis, label="test AUROC")
    axis.set_title(title, fontsize="medium")
    figure.tight_layout()
    return figure


def confusion_counts(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    return counts


def confusion_matrices(runs: list[tuple[str, np.ndarray, np.ndarray]], class_names: list[str], title: str):
    """Row-normalised confusion matrices (true x predicted), one panel per backbone (its first seed)."""
    plt = _pyplot()
    k = len(class_names)
    figure, axes = plt.subplots(1, len(runs), figsize=(0.5 * k * len(runs) + 2.5 * len(runs), 0.5 * k + 2.2),
                                squeeze=False)
    for axis, (backbone, true, predicted) in zip(axes[0], runs):
        counts = confusion_counts(true, predicted, k)
        with np.errstate(invalid="ignore"):
            share = counts / counts.sum(1, keepdims=True)
        axis.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(counts):
            axis.text(j, i, f"{int(value)}", ha="center", va="center", fontsize="x-small",
                      color="white" if np.nan_to_num(share[i, j]) > 0.5 else "black")
        axis.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize="small")
        axis.set_yticks(range(k), class_names, fontsize="small")
        axis.set_xlabel("predicted")
        axis.set_title(backbone, fontsize="small")
    axes[0][0].set_ylabel("true")
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return figure


def case_distribution(cases: pd.DataFrame, metric: str, title: str, unit: str):
    """Per-case (per-volume) scores of each backbone x protocol: box plot with every case drawn over it."""
    plt = _pyplot()
    groups = list(cases.groupby(["protocol", "backbone"]))
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 2), 3.4))
    values = [group.value.dropna().to_numpy() for _, group in groups]
    axis.boxplot(values, showfliers=False)
    rng = np.random.default_rng(0)
    for position, points in enumerate(values, start=1):
        axis.scatter(position + rng.uniform(-0.15, 0.15, len(points)), points, s=8, alpha=0.6, color="#4c72b0")
    axis.set_xticks(range(1, len(groups) + 1), [f"{b}\n{p}" for (p, b), _ in groups], fontsize="small", rotation=30,
                    ha="right", rotation_mode="anchor")  # long backbone names side by side would overlap
    axis.set_ylabel(f"{metric} per {unit}")
    axis.set_title(title, fontsize="medium")
    figure.tight_layout()
    return figure


def cost_scatter(points: pd.DataFrame, metric: str, title: str):
    """Test metric against each cost (log scale): one point per backbone x protocol, marker per protocol."""
    plt = _pyplot()
    relative = {c: next((r for r in points.columns if r.startswith(f"{c} x ")), None) for c in COSTS}
    costs = [relative[c] or c for c in COSTS if (relative[c] or c) in points.columns
             and points[relative[c] or c].notna().any()]  # as multiples of a baseline backbone's, where one is named
    positive = {c: points[c][(points[c] > 0) & np.isfinite(points[c])] for c in costs}
    same = [c for c in costs if positive[c].nunique() <= 1]  # one value: no axis to read a trade-off on
    costs = [c for c in costs if c not in same] or costs[:1]
    if same:
        title += " (equal for every point: " + ", ".join(
            f"{COSTS[c.partition(' x ')[0]]} {positive[c].iloc[0]:.3g}" if len(positive[c]) else COSTS[c.partition(' x ')[0]]
            for c in same) + ")"
    width = 3.3 * len(costs)
    _, legend_height = legend_rows([*map(str, points.protocol.unique()), *map(str, points.backbone.unique())], width)
    figure, axes = plt.subplots(1, len(costs), figsize=(width, 3.5 + LEGEND_ROW_INCHES * legend_height),
                                squeeze=False, sharey=True)
    shapes = markers(sorted(points.protocol.unique()))
    colours = palette(sorted(points.backbone.unique()))
    for axis, cost in zip(axes[0], costs):
        for value, mean, protocol, backbone in zip(points[cost], points["mean"], points.protocol, points.backbone):
            if value is not None and np.isfinite(value) and value > 0:
                axis.scatter(value, mean, marker=shapes[protocol], color=colours[backbone])
        values = points[cost][points[cost] > 0]
        if len(values) and values.max() / values.min() > 20:  # orders of magnitude apart (e.g. params of
            axis.set_xscale("log")  # a linear head vs full fine-tuning)
        else:
            axis.set_xlim(left=0)  # a cost is a ratio scale: its axis starts at 0, not at the smallest value
        base, _, baseline = cost.partition(" x ")
        axis.set_xlabel(COSTS[base] + (f" (x {baseline})" if baseline else ""))
        axis.tick_params(axis="x", labelsize="small")
    axes[0][0].set_ylabel(f"test {metric}")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=b) for b, c in colours.items()]
    handles += [plt.Line2D([], [], color="#555", marker=m, linestyle="", label=p) for p, m in shapes.items()]
    figure.suptitle(title, fontsize="medium")
    legend_below(figure, handles)
    return figure


def adaptation_bars(rows: pd.DataFrame, metric: str, title: str):
    """Per backbone, the frozen protocols beside full fine-tuning and PEFT, with 95 % intervals."""
    plt = _pyplot()
    protocols = [p for p in (*FROZEN, *TUNED) if p in set(rows.protocol)]
    backbones = sorted(rows.backbone.unique())
    # wide enough to read, never wider than a page: many backbones get thinner bars
    figure, axis = plt.subplots(figsize=(min(16.0, max(4.5, 1.2 * len(backbones) * max(1, len(protocols)) / 3 + 2)), 3.8))
    width = 0.8 / len(protocols)
    for offset, protocol in enumerate(protocols):
        part = rows[rows.protocol == protocol].set_index("backbone").reindex(backbones)
        positions = np.arange(len(backbones)) + (offset - (len(protocols) - 1) / 2) * width
        error = [(part["mean"] - part.ci_low).clip(lower=0).fillna(0), (part.ci_high - part["mean"]).clip(lower=0)
                 .fillna(0)]
        axis.bar(positions, part["mean"], width, yerr=error, capsize=2, label=protocol,
                 hatch="" if protocol in FROZEN else "..", alpha=0.9)
    axis.set_xticks(range(len(backbones)), backbones, rotation=30, ha="right", fontsize="small")
    axis.set_ylabel(f"test {metric}")
    value_axis(axis, rows, metric)
    axis.set_title(title, fontsize="medium")
    legend(figure, axis, inside=len(protocols), loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, not on bars
    return figure


def cka_heatmap(matrix: pd.DataFrame, title: str):
    plt = _pyplot()
    size = 1.6 + 0.55 * len(matrix)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(matrix.values, cmap="magma", vmin=0, vmax=1)
    axis.set_xticks(range(len(matrix)), matrix.columns, rotation=40, ha="right")
    axis.set_yticks(range(len(matrix)), matrix.index)
    for (i, j), value in np.ndenumerate(matrix.values):
        axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small",
                  color="black" if value > 0.6 else "white")
    figure.colorbar(image, ax=axis, label="linear CKA")
    axis.set_title(title, fontsize="medium")
    figure.tight_layout()
    return figure


def reliability_diagram(points: pd.DataFrame, title: str):
    """Observed rate against mean predicted probability per equal-mass bin, one line per backbone (first run);
    on the diagonal a model is calibrated."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    colours = palette(sorted(points.backbone.unique()))
    for backbone, rows in points.groupby("backbone"):
        axis.plot(rows.predicted, rows.observed, marker="o", color=colours[backbone], label=backbone)
    axis.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("mean predicted probability (bin)")
    axis.set_ylabel("observed rate of positives")
    axis.set_title(title, fontsize="medium")
    legend(figure, axis, loc="upper left")
    return figure


def published_scatter(rows: pd.DataFrame):
    """Published mean (± std) against this study's mean (95 % interval), one panel per metric; grey: not
    comparable; the diagonal is agreement."""
    plt = _pyplot()
    metrics = sorted(rows.metric.unique())
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        part = rows[rows.metric == metric]
        for row in part.itertuples():
            grey = row.verdict.startswith("not comparable")
            colour = "#aaaaaa" if grey else "#c0392b" if row.verdict.startswith("this study") else "#2471a3"
            axis.errorbar(row.published_mean, row.mean, xerr=0 if np.isnan(row.published_std) else row.published_std,
                          yerr=[[max(0.0, row.mean - row.ci_low)], [max(0.0, row.ci_high - row.mean)]], fmt="o",
                          color=colour, markersize=4, capsize=2, linewidth=0.8)
        values = np.concatenate([part.published_mean, part.ci_low, part.ci_high])
        values = values[np.isfinite(values)]
        low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
        pad = max(0.01, 0.05 * (high - low))
        axis.plot([low - pad, high + pad], [low - pad, high + pad], color="#555", linewidth=0.8, linestyle="--")
        axis.set_xlim(low - pad, high + pad)
        axis.set_ylim(low - pad, high + pad)
        axis.set_xlabel(f"published {metric}")
        axis.set_ylabel(f"this study's {metric}")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=t)
               for t, c in (("consistent", "#2471a3"), ("outside this study's interval", "#c0392b"),
                            ("not comparable", "#aaaaaa"))]
    legend_below(figure, handles)
    return figure

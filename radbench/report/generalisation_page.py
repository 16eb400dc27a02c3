"""The report's "Does it generalise?" section: external tests, subgroups, robustness to acquisition shifts
(statistics in report/generalisation.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.report import generalisation as stats
from radbench.report.figures import _pyplot, legend_below, palette
from radbench.report.html import Page
from radbench.report.tables import write_table


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Interval pairs as low/high columns, private columns dropped: what the CSV holds."""
    out = frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
    for column in [c for c in out.columns if c.endswith("_ci") or c == "ci"]:
        out[f"{column}_low"] = [v[0] for v in out[column]]
        out[f"{column}_high"] = [v[1] for v in out[column]]
        out = out.drop(columns=column)
    return out


def generalisation_section(page: Page, store, jobs: pd.DataFrame, tables, resamples: int, seed: int) -> None:
    external = stats.external_rows(store, jobs, resamples, seed)
    subgroups = stats.subgroup_rows(store, jobs, resamples, seed)
    robustness = stats.robustness_rows(store, jobs, resamples, seed)
    if external.empty and subgroups.empty and robustness.empty:
        return
    section = page.section("Does it generalise?")
    section.text(f"AUROC (macro over classes) on stored test predictions; 95 % intervals over {resamples} resamples "
                 "of each test set's patients and, where runs differ, over runs (means over runs).")
    if not external.empty:
        write_table(_flat(external), tables, "external")
        section.heading("External test sets")
        section.text("The model chosen and refit on the source dataset, applied unchanged to another dataset's test "
                     "split; in-domain = the source's test split scored on the same matched classes. Gap = external "
                     "− in-domain; the two sets hold different patients, each resampled on its own.")
        section.table(["backbone", "protocol", "external set (images)", "classes", "in-domain", "external", "gap",
                       "p"], [[r.backbone, r.protocol, f"{r.external} ({r.external_images})", r.classes,
                               stats._text(r.in_domain, r.in_domain_ci), stats._text(r.external_value, r.external_ci),
                               stats._text(r.gap, r.gap_ci),
                               f"test set too small to tell ({r.too_small})" if r.too_small else f"{r.p_gap:.3g}"]
                              for r in external.itertuples()])
    if not subgroups.empty:
        write_table(_flat(subgroups), tables, "subgroups")
        gaps = stats.largest_gaps(subgroups)
        write_table(_flat(gaps), tables, "subgroup-gaps")
        section.heading("Subgroups")
        section.text(f"Per group of each metadata column: AUROC with its interval over the group's patients, and "
                     f"the gap to the whole test set. Groups with fewer than {stats.MIN_POSITIVES} positives are "
                     "shown and flagged (grey), never named worst; the largest gap is between the best and worst "
                     "ranked groups, each resampled on its own patients.")
        for (dataset, source), rows in subgroups.groupby(["dataset", "source"]):
            section.table(["backbone", "protocol", "column", "group", "images", "positives", "AUROC", "gap to all"],
                          [[r.backbone, r.protocol, r.column, r.group, r.images, r.positives,
                            stats._text(r.value, r.ci),
                            f"{r.gap_to_overall:+.3f}" if np.isfinite(r.gap_to_overall) else "–"]
                           for r in rows.itertuples()],
                          ["worse" if r.flagged else "" for r in rows.itertuples()])
            page.figure(section, gap_plot(rows), f"subgroups-{dataset}-{source}", f"{dataset} subgroups ({source})",
                        "Per backbone x protocol: each group's AUROC minus the whole test set's, 95 % interval of "
                        "the group's AUROC shifted alike; hollow markers: flagged groups.")
        section.table(["backbone", "protocol", "column", "worst group", "best group", "largest gap", "p", "note"],
                      [[r.backbone, r.protocol, r.column, r.worst, r.best, stats._text(r.gap, r.gap_ci),
                        "" if not np.isfinite(r.p_gap) else f"{r.p_gap:.3g}", r.note] for r in gaps.itertuples()])
    if not robustness.empty:
        summary = stats.robustness_summary(robustness)
        write_table(_flat(robustness), tables, "robustness")
        write_table(_flat(summary), tables, "robustness-summary")
        section.heading("Robustness to acquisition shifts")
        section.text("Test images corrupted (MedMNIST-C's parameters per severity; train and val never corrupted). "
                     "Per severity the AUROC averaged over corruptions and runs; relative robustness = area under "
                     "AUROC against severity (0 = clean) over the clean AUROC's area, 1 = unaffected; its interval "
                     "covers the test patients (every severity scored on the same resamples).")
        severities = [c for c in summary.columns if c.startswith("severity ")]
        section.table(["backbone", "protocol", "runs", "clean", *severities, "relative robustness"],
                      [[r["backbone"], r["protocol"], r["runs"], f"{r['clean']:.3f}",
                        *[f"{r[s]:.3f}" for s in severities],
                        stats._text(r["relative_robustness"], r["relative_robustness_ci"])]
                       for _, r in summary.iterrows()])
        for dataset, rows in robustness.groupby("dataset"):
            page.figure(section, severity_plot(rows), f"robustness-{dataset}", f"{dataset} robustness",
                        "AUROC against severity: left the mean over corruptions, right each corruption "
                        "(one line per backbone x protocol, mean over runs).")


def gap_plot(rows: pd.DataFrame):
    plt = _pyplot()
    labels = list(dict.fromkeys(f"{r.column}: {r.group}" for r in rows.itertuples()))
    series = list(dict.fromkeys(f"{r.backbone} / {r.protocol}" for r in rows.itertuples()))
    colours = palette(series)
    figure, axis = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 3.8))
    offsets = np.linspace(-0.25, 0.25, len(series)) if len(series) > 1 else [0.0]
    for offset, name in zip(offsets, series):
        mine = rows[[f"{r.backbone} / {r.protocol}" == name for r in rows.itertuples()]]
        for r in mine.itertuples():
            x = labels.index(f"{r.column}: {r.group}") + offset
            shift = r.value - r.gap_to_overall
            axis.errorbar(x, r.gap_to_overall, yerr=[[r.gap_to_overall - (r.ci[0] - shift)],
                                                     [(r.ci[1] - shift) - r.gap_to_overall]],
                          fmt="o", color=colours[name], mfc="white" if r.flagged else colours[name], capsize=2)
    axis.axhline(0, color="#888", linewidth=0.8)
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
    axis.set_ylabel("AUROC − whole test set")
    legend_below(figure, [plt.Line2D([], [], color=c, marker="o", linestyle="", label=n) for n, c in colours.items()])
    return figure


def severity_plot(rows: pd.DataFrame):
    plt = _pyplot()
    series = list(dict.fromkeys(f"{b} / {p}" for b, p in zip(rows.backbone, rows.protocol)))
    colours = palette(series)
    kinds = sorted(set(rows.corruption) - {"clean"})
    figure, axes = plt.subplots(1, 1 + len(kinds), figsize=(3.0 * (1 + len(kinds)), 3.4), squeeze=False,
                                sharey=True)
    for name in series:
        mine = rows[[f"{b} / {p}" == name for b, p in zip(rows.backbone, rows.protocol)]]
        clean = mine[mine.severity == 0].value.mean()
        mean = mine[mine.severity > 0].groupby("severity").value.mean()
        axes[0][0].plot([0, *mean.index], [clean, *mean.values], marker="o", color=colours[name])
        for axis, kind in zip(axes[0][1:], kinds):
            curve = mine[mine.corruption == kind].groupby("severity").value.mean()
            axis.plot([0, *curve.index], [clean, *curve.values], marker=".", color=colours[name])
            axis.set_title(kind, fontsize="small")
    axes[0][0].set_title("mean over corruptions", fontsize="small")
    axes[0][0].set_ylabel("test AUROC")
    for axis in axes[0]:
        axis.set_xlabel("severity")
    legend_below(figure, [plt.Line2D([], [], color=c, marker="o", label=n) for n, c in colours.items()])
    return figure

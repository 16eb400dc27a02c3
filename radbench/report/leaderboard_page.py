"""A dataset's leaderboard on the page: a bar chart per protocol, the test split's size and detectable difference,
and the table of means, run-aware intervals, verdicts and paired probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.report import figures
from radbench.report.html import Page, Section
from radbench.report.leaderboard import ONE_BACKBONE
from radbench.report.verdicts import MIN_RUNS


def section(page: Page, section: Section, board: pd.DataFrame, dataset: str, metric: str, resamples: int) -> None:
    rows = board[(board.dataset == dataset) & (board.metric == metric) & ~board.protocol.str.contains("@")]
    for protocol in sorted(rows.protocol.unique()):
        page.figure(section, figures.leaderboard_bars(board, dataset, protocol, metric),
                    f"leaderboard-{dataset}-{protocol}-{metric}", f"{dataset} {protocol} {metric}", half=True)
    if rows.empty:
        return
    section.text("Bars: mean over runs (seeds × repeated draws) with its 95 % interval over runs and test patients "
                 "(test patients only where the runs are identical or single, as the table says); hatched: "
                 "significantly worse than the best (Holm-corrected). Where runs differ, a verdict needs at least "
                 f"{MIN_RUNS} runs per backbone. P(best > this): share of paired runs (same seed and draw) in which the "
                 "best scored higher.")
    for protocol, group in rows.groupby("protocol"):
        share = group.run_variance_share.mean()
        first = group.iloc[0]
        section.text(f"{protocol}: test split of {int(first.test_size)} patients; at 80 % power it detects a "
                     f"{metric} difference of {first.detectable_difference:.3f} or more (two-sided 5 %)"
                     + ("" if np.isnan(share) else f"; training randomness is {100 * share:.0f} % of a run's "
                        "variance (the rest: which test patients were sampled)") + ".")
    rows = rows.sort_values(["protocol", "rank"])
    section.table(["protocol", "backbone", "rank", metric, "95 % CI", "covers", "test-patients-only CI", "± std",
                   "runs", "verdict", "p vs best", "P(best > this)"],
                  [[r.protocol, r.backbone, "–" if r.verdict == ONE_BACKBONE else r.rank, f"{r.mean:.4f}",
                    f"{r.ci_low:.4f} – {r.ci_high:.4f}", r.interval,
                    f"{r.test_ci_low:.4f} – {r.test_ci_high:.4f}", "" if np.isnan(r.std) else f"{r.std:.4f}",
                    _runs_text(r.runs, r.seeds),
                    r.verdict + ("; interval contains 0.5: chance" if r.contains_chance else ""),
                    _p_text(r.p_vs_best, r.test, resamples),
                    "" if np.isnan(r.p_best_better) else f"{r.p_best_better:.2f}"]
                   for r in rows.itertuples()],
                  ["worse" if r.significantly_worse_than_best else "" for r in rows.itertuples()])


def _runs_text(runs: int, seeds: int) -> str:
    """Runs, and the seeds behind them where repeated draws multiply them (2 seeds x 2 draws: "4 (2 seeds)")."""
    return str(runs) if runs == seeds else f"{runs} ({seeds} seeds)"


def _p_text(p_value: float, test: str, resamples: int) -> str:
    if np.isnan(p_value):
        return ""
    if p_value == 0 and test.endswith("paired bootstrap"):  # no resample on the other side: below the resolution
        return f"< {1 / resamples:.2g} ({test})"
    return f"{p_value:.3g} ({test})"

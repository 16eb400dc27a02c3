"""The answer first: per dataset, which backbone x protocol to use, by how much, how sure that is, and what would
change it — sentences built from the leaderboard's own numbers (means, run-aware intervals, verdicts), so the page's
top and `radbench.load(OUT).answer()` never disagree with the table below them.

The recommendation is the highest mean of the dataset's headline metric over every backbone x protocol; the
runner-up is the best other backbone under the same protocol, with the leaderboard's paired verdict against it.
When the verdict cannot separate them (or there are too few runs, or one backbone), the sentence says so and what
to run next. Other protocols of the recommended backbone whose mean lies inside its interval are named: as good as
far as this study can tell."""

from __future__ import annotations

import numpy as np
import pandas as pd

SET_ROWS = ("@external:", "@corrupt:")  # rows scored on other test sets: their own sections
HEADLINE = ("auroc", "dice", "accuracy", "kappa", "map")  # the first a dataset has is its headline metric


def headline_metrics(board: pd.DataFrame) -> dict[str, str]:
    return {dataset: next((m for m in HEADLINE if m in set(rows.metric)), rows.metric.iloc[0])
            for dataset, rows in board.groupby("dataset")}


def answer(board: pd.DataFrame, headline: dict[str, str]) -> list[str]:
    """One sentence per dataset, then one across datasets when there are several."""
    sentences, chosen, separated = [], {}, set()
    for dataset in sorted(headline):
        metric = headline[dataset]
        rows = board[(board.dataset == dataset) & (board.metric == metric)]
        rows = rows[~rows.protocol.str.contains("|".join(SET_ROWS), regex=True)]
        if rows.empty:
            continue
        top = rows.loc[rows["mean"].idxmax()]
        chosen[dataset] = top.backbone
        if rows.backbone.nunique() > 1 and _significant(_runner_up(rows, top)):
            separated.add(dataset)
        every = board[(board.dataset == dataset) & (board.metric == metric)]
        sentences.append(_dataset_sentence(dataset, metric, rows, top, every))
    if len(chosen) > 1 and board.backbone.nunique() > 1:
        by_backbone: dict[str, list[str]] = {}
        for dataset, backbone in chosen.items():
            by_backbone.setdefault(backbone, []).append(dataset)
        told = f" (significantly ahead of the runner-up on {len(separated)} of them)"
        if len(by_backbone) == 1:
            sentences.append(f"Across the {len(chosen)} datasets: {next(iter(by_backbone))} scores highest on every "
                             f"one{told}.")
        else:
            parts = "; ".join(f"{b} on {', '.join(d)}" for b, d in sorted(by_backbone.items()))
            sentences.append(f"Across the {len(chosen)} datasets no backbone scores highest on all: {parts}{told}.")
    return sentences


def _runner_up(rows: pd.DataFrame, top):
    """The best other backbone under the recommended protocol (None: no other ran it)."""
    rivals = rows[(rows.protocol == top.protocol) & (rows.backbone != top.backbone)]
    return None if rivals.empty else rivals.loc[rivals["mean"].idxmax()]


def _significant(second) -> bool:
    """The leaderboard found the runner-up significantly worse than the recommendation."""
    verdict = "" if second is None else str(second.verdict)
    return "significantly worse" in verdict and "not" not in verdict


def _elsewhere(every: pd.DataFrame, top) -> str:
    """What would change the answer: an external test set on which another backbone, under the recommended
    protocol, scores higher than the recommendation."""
    notes = []
    prefix = f"{top.protocol}@external:"
    external = every[every.protocol.str.startswith(prefix, na=False)]
    for protocol, group in external.groupby("protocol"):
        best = group.loc[group["mean"].idxmax()]
        own = group[group.backbone == top.backbone]
        if best.backbone == top.backbone or own.empty:
            continue
        verdict = str(own.iloc[0].verdict)
        if _significant(own.iloc[0]):
            told = "significantly"
        elif "not significantly" in verdict:
            told = "though not significantly"
        else:
            told = f"and {verdict}"
        notes.append(f"on the external test {protocol.removeprefix(prefix)}, {best.backbone} scores higher "
                     f"({best['mean']:.4f} against {own.iloc[0]['mean']:.4f}), {told}")
    if not notes:
        return ""
    return " What could change the answer: " + "; ".join(notes) + "."


def _value(row) -> str:
    return (f"{row['mean']:.4f} (95 % CI {row.ci_low:.4f}–{row.ci_high:.4f}, covering {row.interval}; "
            f"{int(row.runs)} run{'s' if int(row.runs) != 1 else ''})")


def _dataset_sentence(dataset: str, metric: str, rows: pd.DataFrame, top, every: pd.DataFrame | None = None) -> str:
    chance = " — its interval contains 0.5 (chance)" if bool(top.get("contains_chance", False)) else ""
    if rows.backbone.nunique() == 1:
        return (f"{dataset}: one backbone ({top.backbone}), so nothing is compared; its highest {metric} is with "
                f"{top.protocol}: {_value(top)}{chance}.")
    second = _runner_up(rows, top)
    head = f"{dataset}: {top.backbone} with {top.protocol} scores the highest {metric}, {_value(top)}{chance}"
    if second is None:
        text = f"{head}; no other backbone ran {top.protocol} on it."
    else:
        gap = top["mean"] - second["mean"]
        rival = f"{second.backbone} ({second['mean']:.4f}, {gap:.4f} lower)"
        verdict = str(second.verdict)
        if _significant(second):
            text = (f"{head}: the recommendation. The runner-up {rival} is significantly worse (p "
                    f"{second.p_vs_best:.3g}, Holm-corrected).")
        elif "too few runs" in verdict:
            text = (f"{head}; the runner-up is {rival}: too few runs to tell them apart — run at least 3 seeds.")
        else:
            detectable = second.get("detectable_difference", np.nan)
            need = "" if pd.isna(detectable) else (f"; at 80 % power this test set of {int(second.test_size)} "
                                                    f"patients detects a difference of {detectable:.3f} or more")
            p_text = "" if pd.isna(second.p_vs_best) else f" (p {second.p_vs_best:.3g})"
            text = (f"{head}, but the runner-up {rival} is not significantly different{p_text}: this study cannot "
                    f"tell them apart{need}.")
    text += _elsewhere(every if every is not None else rows, top)
    alike = rows[(rows.backbone == top.backbone) & (rows.protocol != top.protocol)
                 & rows["mean"].between(top.ci_low, top.ci_high)]
    if not alike.empty:
        text += (" Within that interval, as good as far as this study can tell: " +
                 ", ".join(f"{top.backbone} with {r.protocol} ({r['mean']:.4f})" for _, r in alike.iterrows()) + ".")
    return text

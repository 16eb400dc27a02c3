"""The retrieval table of a dataset's section: per backbone, mAP and precision@k of same-finding retrieval with
the leaderboard's intervals (test patients resampled; runs identical, as nothing in retrieval is drawn) and its
verdict on mAP."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.metrics.retrieval import HEADLINE, is_retrieval_metric, precision_k
from radbench.report.html import Section
from radbench.report.leaderboard import ONE_BACKBONE


def section(section: Section, board: pd.DataFrame, dataset: str) -> None:
    rows = board[(board.dataset == dataset) & board.metric.map(is_retrieval_metric).astype(bool)
                 & ~board.protocol.str.contains("@")]
    if rows.empty:
        return
    precision = sorted({m for m in rows.metric if m != HEADLINE}, key=precision_k)
    section.heading("Retrieval")
    section.text("Each test image queries the train + val images by cosine similarity of the cached features; a "
                 "retrieved image is relevant when it shares a finding with the query (single-label: the same "
                 "class). mAP: mean over queries of the average precision over the whole ranking; precision@k: "
                 "share of relevant images among the k most similar. Intervals resample test patients; nothing "
                 "in retrieval is drawn, so every seed gives the same numbers. Verdict on mAP.")
    cells = rows.set_index(["protocol", "backbone", "metric"])
    table = []
    for (protocol, backbone), group in rows[rows.metric == HEADLINE].sort_values("rank").groupby(
            ["protocol", "backbone"], sort=False):
        head = group.iloc[0]
        values = [_cell(cells, protocol, backbone, m) for m in (HEADLINE, *precision)]
        table.append([protocol, backbone, "–" if head.verdict == ONE_BACKBONE else int(head["rank"]), *values,
                      int(head.test_size), head.verdict])
    section.table(["protocol", "backbone", "rank", "mAP (95 % CI)",
                   *[f"precision@{precision_k(m)} (95 % CI)" for m in precision], "test patients", "verdict (mAP)"],
                  table)


def _cell(cells: pd.DataFrame, protocol: str, backbone: str, metric: str) -> str:
    if (protocol, backbone, metric) not in cells.index:
        return ""
    row = cells.loc[(protocol, backbone, metric)]
    if np.isnan(row["mean"]):
        return "undefined"
    return f"{row['mean']:.4f} ({row.ci_low:.4f} – {row.ci_high:.4f})"

"""Costs relative to a baseline backbone (Huix et al., Fig. 3: each model's cost as a multiple of the baseline's):
`cost_baseline:` in the study or `radbench report --cost-baseline NAME`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radbench.report.plots import COSTS


def relative_costs(costs: pd.DataFrame, baseline: str | None, warn=print) -> pd.DataFrame:
    """`costs` with a `<cost> x <baseline>` column per cost: each row's cost over the baseline backbone's on the same
    dataset x protocol (1.0 on the baseline's own rows; empty where the baseline did not run that protocol or its
    cost is 0, e.g. the trainable parameters of kNN)."""
    if costs.empty or not baseline:
        return costs
    if baseline not in set(costs.backbone):
        warn(f"cost baseline {baseline!r} has no stored job: costs are shown as they are "
             f"(backbones: {', '.join(sorted(costs.backbone.unique()))})")
        return costs
    reference = costs[costs.backbone == baseline].set_index(["dataset", "protocol"])
    keys = pd.MultiIndex.from_frame(costs[["dataset", "protocol"]])
    out = costs.copy()
    for cost in [c for c in COSTS if c in costs.columns]:
        base = reference[cost].reindex(keys).to_numpy(dtype=float)
        value = costs[cost].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[relative_name(cost, baseline)] = np.where(base > 0, value / base, np.nan)
    return out


def relative_name(cost: str, baseline: str) -> str:
    return f"{cost} x {baseline}"

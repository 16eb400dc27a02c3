"""Costs relative to a baseline backbone (Huix et al., Fig. 3: each model's cost as a multiple of the baseline's):
`cost_baseline:` in the study or `radbench report --cost-baseline NAME`; and the note on where times were measured
and how loaded that machine was."""

from __future__ import annotations

import json

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


def machine_note(jobs: pd.DataFrame) -> str:
    """Where the costs' times were measured (devices, hosts, cores) and the machine's load as jobs finished."""
    machines = []
    for timings in jobs.timings:
        timings = json.loads(timings) if isinstance(timings, str) else (timings or {})
        if "device" in timings:
            machines.append(timings)
    if not machines:
        return ("Times: wall clock on the machine that ran each job (this store did not record which, nor its load); "
                "compare them within this study only.")
    devices = sorted({m["device"] for m in machines})
    hosts = sorted({m.get("host", "?") for m in machines})
    cores = sorted({m["cpus"] for m in machines if m.get("cpus")})
    loads = [m["load_1min"] for m in machines if m.get("load_1min") is not None]
    text = (f"Times: wall clock on {', '.join(devices)} ({len(hosts)} host{'s' if len(hosts) > 1 else ''}, "
            f"{'/'.join(map(str, cores)) or '?'} CPU cores)")
    if loads:
        text += f"; 1-minute load average {min(loads):.1f}–{max(loads):.1f} as jobs finished"
        if cores and max(loads) > 0.8 * min(cores):
            text += " — a busy machine: times are inflated and noisy"
    return text + ". Compare them within this study only."

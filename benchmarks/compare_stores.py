"""Two output folders of the same study, compared: the same job keys, bit-identical test metrics, predictions and
segmentation cases, equal configs, choices and details (wall times and the folders' own paths aside). Used to check
that a refactoring of the orchestration changes no number: run `benchmarks/every_protocol.yaml` with the old and
the new code into two folders (`radbench run benchmarks/every_protocol.yaml --output-dir A`), then

    python benchmarks/compare_stores.py A B"""

from __future__ import annotations

import json
import sys

import numpy as np

import radbench


def _comparable(value, folder: str):
    """Wall times differ run to run; paths name each run's own folder."""
    if isinstance(value, dict):
        return {k: _comparable(v, folder) for k, v in value.items() if not k.endswith("_seconds") and k != "path"}
    if isinstance(value, list):
        return [_comparable(v, folder) for v in value]
    return value.replace(folder, "OUT") if isinstance(value, str) else value


def main(first: str, second: str) -> int:
    a, b = radbench.load(first), radbench.load(second)
    jobs_a, jobs_b = a.store.jobs().set_index("key"), b.store.jobs().set_index("key")
    print(f"jobs: {len(jobs_a)} and {len(jobs_b)}; same keys: {set(jobs_a.index) == set(jobs_b.index)}")
    differences = 0
    for key in jobs_a.index.intersection(jobs_b.index):
        for column in ("selected", "candidates", "details", "config"):
            if _comparable(json.loads(jobs_a.loc[key, column]), first) != \
                    _comparable(json.loads(jobs_b.loc[key, column]), second):
                differences += 1
                print(f"  differs: {key} ({jobs_a.loc[key, 'protocol']}) {column}")
    metrics_a = a.results.set_index(["job", "metric"]).value.sort_index()
    metrics_b = b.results.set_index(["job", "metric"]).value.reindex(metrics_a.index)
    same_metrics = np.array_equal(metrics_a.to_numpy(), metrics_b.to_numpy(), equal_nan=True)
    print(f"test metrics: {len(metrics_a)}; bit-identical: {same_metrics}")
    order = ["job", "sample_id"]
    pred_a, pred_b = (p.sort_values(order).reset_index(drop=True) for p in (a.predictions, b.predictions))
    columns = [c for c in pred_a.columns if c.startswith(("score_", "target_"))]
    same_predictions = len(pred_a) == len(pred_b) and np.array_equal(pred_a[columns].to_numpy(),
                                                                     pred_b[columns].to_numpy(), equal_nan=True)
    print(f"predictions: {len(pred_a)} rows; bit-identical: {same_predictions}")
    order = ["job", "sample_id", "metric"]
    cases_a, cases_b = (s.sort_values(order).value.to_numpy() for s in (a.samples, b.samples))
    same_cases = len(cases_a) == len(cases_b) and np.array_equal(cases_a, cases_b, equal_nan=True)
    print(f"segmentation cases: {len(cases_a)}; bit-identical: {same_cases}")
    print(f"configs, choices, details that differ: {differences}")
    return 0 if same_metrics and same_predictions and same_cases and not differences else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

"""Content-based image retrieval from cached features: each test image queries the refit set (train + val) by
cosine similarity; precision@k and average precision (AP over the whole ranked bank) per query, their means the
protocol's numbers (mAP = mean AP). Stored per query, so the report's intervals resample test patients as for
segmentation cases. Relevance: a shared finding (metrics/retrieval.py). A query without a relevant bank image has
no AP (left out of the mean, counted in the details). Nothing is drawn: the result is the same for every seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from radbench.metrics.retrieval import HEADLINE, retrieval_scores
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolSpec, pick_best, small_validation
from radbench.schema import PositiveInt

if TYPE_CHECKING:
    from radbench.protocols.base import ProtocolInput


class RetrievalConfig(ProtocolConfigBase):
    k: list[PositiveInt] = Field(default=[1, 5, 10], min_length=1)


def _means(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            for name, values in per_query.items()}


@dataclass
class RetrievalResult:
    """Per-query metrics (stored as the job's cases, with their patients), their means, the feature type chosen."""

    selected: dict
    candidates: list[dict]
    val_metrics: dict
    test_metrics: dict
    sample_metrics: list[dict]
    patient_ids: list[str]
    details: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)


def run_retrieval(cfg: RetrievalConfig, inputs: ProtocolInput) -> RetrievalResult:
    ks = sorted(set(cfg.k))
    candidates, val_scores = [], {}
    for feature_type in inputs.feature_types:  # chosen on val queries against the train bank, by mAP
        per_query = retrieval_scores(inputs.features.get(feature_type, "train"), inputs.targets["train"],
                                     inputs.features.get(feature_type, "val"), inputs.targets["val"], ks,
                                     inputs.device)
        val_scores[feature_type] = _means(per_query)
        candidates.append({"params": {"feature": feature_type}, "val": val_scores[feature_type][HEADLINE]})
    chosen = pick_best([c["val"] for c in candidates])
    feature_type = candidates[chosen]["params"]["feature"]
    test_per_query = retrieval_scores(inputs.train_val_features(feature_type), inputs.train_val_targets,
                                      inputs.features.get(feature_type, "test"), inputs.targets["test"], ks,
                                      inputs.device)
    test = inputs.dataset.splits["test"]
    cases = [{"sample_id": str(sample), **{name: float(values[i]) for name, values in test_per_query.items()}}
             for i, sample in enumerate(test.sample_ids)]
    details = {}
    unanswerable = int(np.isnan(test_per_query[HEADLINE]).sum())
    if unanswerable:
        details["queries_without_relevant"] = (f"{unanswerable} of {len(cases)} test queries have no relevant image "
                                               "in the bank: no AP (left out of mAP); precision@k 0")
    bank_size = len(inputs.train_val_targets)
    if any(k > bank_size for k in ks):
        details["k_clamped"] = f"k above the bank's {bank_size} images: the whole bank"
    if len(candidates) > 1 and (note := small_validation(len(inputs.targets["val"]), len(candidates))):
        details["selection_small_val"] = note
    return RetrievalResult({"feature": feature_type}, candidates, val_scores[feature_type], _means(test_per_query),
                           cases, [str(p) for p in test.patient_ids], details,
                           {"trainable_params": 0.0, "bank_size": float(bank_size)})


PROTOCOLS.add("retrieval", ProtocolSpec(
    "retrieval", RetrievalConfig, run_retrieval,
    "same-finding image retrieval by cosine similarity: precision@k and mAP, per test query",
    seed_free=lambda cfg: True, record_task="retrieval", headline=HEADLINE))

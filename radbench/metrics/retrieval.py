"""Same-finding image retrieval metrics per query: precision@k and average precision over a ranked bank.

A bank image is relevant to a query when they share a positive finding (single-label: the same class); for a
multi-label query with no positive finding, the bank images with none are relevant ("no finding" as a class).
Unknown labels (NaN) count as not positive. A query with no relevant image in the bank has no AP (NaN); its
precision@k is 0."""

from __future__ import annotations

import numpy as np

HEADLINE = "map"


def _positives(targets: np.ndarray) -> np.ndarray:
    """(N, C + 1) bool: the positive findings, and a last column "no finding" (set where none is positive)."""
    positive = np.nan_to_num(np.asarray(targets, dtype=np.float64), nan=0.0) > 0.5
    return np.concatenate([positive, ~positive.any(1, keepdims=True)], axis=1)


def precision_metric(k: int) -> str:
    return f"precision_at_{k}"


def is_retrieval_metric(name: str) -> bool:
    return name == HEADLINE or name.startswith("precision_at_")


def precision_k(name: str) -> int:
    """The k of a `precision_at_<k>` metric (what orders them)."""
    return int(name.rsplit("_", 1)[1])


def retrieval_scores(bank: np.ndarray, bank_targets: np.ndarray, queries: np.ndarray, query_targets: np.ndarray,
                     ks: list[int], device, chunk: int = 256) -> dict[str, np.ndarray]:
    """Per query: precision@k for each k (k above the bank's size: the whole bank) and AP (NaN without a relevant
    bank image). Bank images ranked by cosine similarity, most similar first (ties in index order)."""
    import torch

    bank_t = torch.nn.functional.normalize(torch.tensor(np.asarray(bank), device=device, dtype=torch.float32), dim=1)
    bank_positive = torch.tensor(_positives(bank_targets), device=device, dtype=torch.float32)
    query_positive = torch.tensor(_positives(query_targets), device=device, dtype=torch.float32)
    out = {precision_metric(k): [] for k in ks} | {HEADLINE: []}
    for start in range(0, len(queries), chunk):
        q = torch.tensor(np.asarray(queries[start:start + chunk]), device=device, dtype=torch.float32)
        sims = torch.nn.functional.normalize(q, dim=1) @ bank_t.T
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices
        relevant = (query_positive[start:start + chunk] @ bank_positive.T > 0)  # (Q, N)
        ranked = torch.gather(relevant, 1, order).double()
        hits = ranked.cumsum(1)
        for k in ks:
            k_used = min(k, ranked.shape[1])
            out[precision_metric(k)].append((hits[:, k_used - 1] / k_used).cpu().numpy())
        ranks = torch.arange(1, ranked.shape[1] + 1, device=device, dtype=torch.float64)
        total = ranked.sum(1)
        ap = (ranked * hits / ranks).sum(1) / total.clamp_min(1)
        out[HEADLINE].append(torch.where(total > 0, ap, torch.full_like(ap, float("nan"))).cpu().numpy())
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in out.items()}

"""k-nearest neighbours on L2-normalised features: cosine similarity, DINO-style temperature-weighted votes.

Single-label: votes are exp(sim / T)-weighted one-hot labels of the k neighbours, normalised to sum to 1.
Multi-label: the exp(sim / T)-weighted mean of the neighbours' known labels, per class."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    finish,
    pick_best,
)
from radbench.schema import PositiveInt

if TYPE_CHECKING:
    import torch


class KnnConfig(ProtocolConfigBase):
    k: list[PositiveInt] = Field(default=[10, 20, 100, 200], min_length=1)
    temperature: float = Field(default=0.07, gt=0)


def nearest(bank: np.ndarray, queries: np.ndarray, k: int, device: torch.device, chunk: int = 2048):
    """Top-k cosine similarities and indices, most similar first."""
    import torch

    bank_t = torch.nn.functional.normalize(torch.tensor(bank, device=device), dim=1)  # a copy: caches are read-only
    sims, idx = [], []
    for start in range(0, len(queries), chunk):
        q = torch.nn.functional.normalize(torch.tensor(queries[start:start + chunk], device=device), dim=1)
        top = (q @ bank_t.T).topk(min(k, len(bank)), dim=1)
        sims.append(top.values.cpu())
        idx.append(top.indices.cpu())
    return torch.cat(sims).double(), torch.cat(idx)


def vote(sims: torch.Tensor, idx: torch.Tensor, bank_targets: np.ndarray, temperature: float) -> np.ndarray:
    import torch

    weights = (sims / temperature).exp()  # (Q, k)
    neighbour = torch.tensor(bank_targets, dtype=torch.float64)[idx]  # (Q, k, C), NaN = missing label
    known = ~neighbour.isnan()
    weighted = (weights[..., None] * neighbour.nan_to_num(0.0)).sum(1)
    mass = (weights[..., None] * known).sum(1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class with no known label has no prior: 0.5
        prior = torch.from_numpy(np.nanmean(bank_targets, axis=0)).double().nan_to_num(0.5)
    scores = torch.where(mass > 0, weighted / mass.clamp_min(1e-300), prior.expand_as(weighted))
    return scores.numpy()


def run_knn(cfg: KnnConfig, inputs: ProtocolInput) -> ProtocolResult:
    bank_size = len(inputs.targets["train"])
    # a k above the training set's size means the whole set: record the k actually used, each once
    ks = sorted({min(k, bank_size) for k in cfg.k})
    clamped = {min(k, bank_size): k for k in sorted(cfg.k) if k > bank_size}
    candidates, cache = [], {}
    for feature_type in inputs.feature_types:
        train = inputs.features.get(feature_type, "train")
        sims, idx = nearest(train, inputs.features.get(feature_type, "val"), max(ks), inputs.device)
        for k in ks:
            scores = vote(sims[:, :k], idx[:, :k], inputs.targets["train"], cfg.temperature)
            value = inputs.selection_value(inputs.targets["val"], scores)
            params = {"feature": feature_type, "k": k, **({"k_requested": clamped[k]} if k in clamped else {})}
            candidates.append({"params": params, "val": value})
            cache[(feature_type, k)] = scores
    chosen = pick_best([c["val"] for c in candidates])
    feature_type, k = candidates[chosen]["params"]["feature"], candidates[chosen]["params"]["k"]
    bank, bank_targets = inputs.train_val_features(feature_type), inputs.train_val_targets

    def scores_of(split: str) -> np.ndarray:
        sims, idx = nearest(bank, inputs.features.get(feature_type, split), k, inputs.device)
        return vote(sims, idx, bank_targets, cfg.temperature)

    test_scores = scores_of("test")
    details = {"k_clamped": f"k {clamped[k]} > {bank_size} training samples: used k = {k}"} if k in clamped else {}
    result = finish(inputs, candidates, chosen, cache[(feature_type, k)], test_scores, details)
    result.costs["trainable_params"] = 0.0  # a kNN memorises the bank; nothing is trained
    result.predict = scores_of
    return result


PROTOCOLS.add("knn", ProtocolSpec("knn", KnnConfig, run_knn, "cosine kNN, temperature-weighted votes, k chosen on val",
                                  seed_free=lambda cfg: True))  # exact top-k over fixed features: nothing is drawn

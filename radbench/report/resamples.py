"""Patient-level bootstrap resamples kept as patient multiplicities, and the metrics computed from them directly.

A resample gives patient p a multiplicity counts[b, p]; every image of p carries it as its weight. Holding the
(B, patients) counts instead of the (B, images) weights they expand to keeps NIH's 25 596-image test split at 22 MB
instead of 200 MB per job, and lets each metric read a patient's weight where it needs it: the weighted AUROC is one
pass over the scores in sorted order (a compiled loop over blocks of resamples side by side, the blocks spread
over the cores), the label
accuracy and the confusion matrices are per-patient sums times the counts (one matrix product).
Equal, resample by resample, to the same metrics on the expanded weights (tests/test_report_stats.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class Resamples:
    counts: np.ndarray  # (B, P) float64: each patient's multiplicity in each resample
    patient: np.ndarray  # (N,) int64: the patient (column of counts) of each sample

    @functools.cached_property
    def by_patient(self) -> np.ndarray:
        """(P, B) copy of the counts: what the AUROC loop reads, a patient's resamples side by side."""
        return np.ascontiguousarray(self.counts.T, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.counts)

    def dense(self) -> np.ndarray:
        """(B, N) sample weights."""
        return self.counts[:, self.patient]

    def subset(self, keep: np.ndarray) -> Resamples:
        """The same resamples seen by a subset of the samples (a class's known labels, a subgroup)."""
        subset = Resamples(self.counts, self.patient[keep])
        subset.__dict__["by_patient"] = self.by_patient  # shared, not copied again
        return subset

    def per_patient(self, values: np.ndarray) -> np.ndarray:
        """(B, ...) weighted sums over samples of `values` (N, ...): per-patient sums times the counts."""
        flat = values.reshape(len(values), -1)
        patients = self.counts.shape[1]
        sums = np.stack([np.bincount(self.patient, weights=column, minlength=patients) for column in flat.T], axis=1)
        return (self.counts @ sums).reshape((len(self.counts), *values.shape[1:]))


def patient_resamples(patient_ids: np.ndarray, resamples: int, seed: int) -> Resamples:
    """Each patient drawn with replacement (the same draws as stats.patient_weights)."""
    patients, index = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(patients), np.full(len(patients), 1.0 / len(patients)), size=resamples)
    return Resamples(counts.astype(np.float64), index.astype(np.int64))


def ones(samples: int) -> Resamples:
    """One 'resample' that is the test split as it is: every sample its own patient, weight 1."""
    return Resamples(np.ones((1, samples)), np.arange(samples, dtype=np.int64))


def auroc(y: np.ndarray, scores: np.ndarray, resamples: Resamples) -> np.ndarray:
    """AUROC under every resample: P(score of a positive > score of a negative), ties half, weighted. NaN where a
    resample has no positive or no negative weight."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])  # groups of tied scores, and the end
    return _auroc_rows(resamples.patient[order], np.asarray(y)[order].astype(np.bool_), starts.astype(np.int64),
                       resamples.by_patient)


BLOCK = 64  # resamples handled together: one patient's multiplicities in them are adjacent in memory (SIMD lanes)


@numba.njit(parallel=True, cache=True, nogil=True)
def _auroc_rows(patient, positive, starts, by_patient):  # pragma: no cover - compiled
    """AUROC under each resample; by_patient is (P, B): a patient's multiplicities in consecutive resamples."""
    resamples = by_patient.shape[1]
    out = np.empty(resamples)
    for block in numba.prange((resamples + BLOCK - 1) // BLOCK):
        first = block * BLOCK
        lanes = min(resamples, first + BLOCK) - first
        below = np.zeros(lanes)  # negative weight strictly below the current group of tied scores
        area = np.zeros(lanes)
        positives = np.zeros(lanes)
        pos = np.zeros(lanes)
        neg = np.zeros(lanes)
        for g in range(len(starts) - 1):
            if starts[g + 1] - starts[g] == 1:  # a score nobody else has: the common case, no tie bookkeeping
                p = patient[starts[g]]
                if positive[starts[g]]:
                    for j in range(lanes):
                        area[j] += by_patient[p, first + j] * below[j]
                        positives[j] += by_patient[p, first + j]
                else:
                    for j in range(lanes):
                        below[j] += by_patient[p, first + j]
                continue
            pos[:] = 0.0
            neg[:] = 0.0
            for k in range(starts[g], starts[g + 1]):
                p = patient[k]
                if positive[k]:
                    for j in range(lanes):
                        pos[j] += by_patient[p, first + j]
                else:
                    for j in range(lanes):
                        neg[j] += by_patient[p, first + j]
            for j in range(lanes):
                area[j] += pos[j] * (below[j] + 0.5 * neg[j])
                below[j] += neg[j]
                positives[j] += pos[j]
        for j in range(lanes):
            total = positives[j] * below[j]
            out[first + j] = area[j] / total if total > 0 else np.nan
    return out

"""The leaderboard's per-job statistics (the metric on the whole test split, its value under every patient resample,
the test split's size and class balance), kept in the store by (job, resample count, seed, statistic version): a
report after new jobs computes only theirs. A job's predictions never change (a changed job is a new key), and every
job of a test split draws the same resamples from the same patients, so cached draws stay paired with new ones.
Payloads are plain arrays (np.savez, no pickle) with a JSON header."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

STATISTIC = "leaderboard"
VERSION = 2  # bump when metrics_under_weights or the resampling changes: older payloads are then ignored


def digest(scores: np.ndarray) -> str:
    """What identifies a job's predictions (runs that gave the same predictions are 'identical')."""
    return hashlib.sha1(np.ascontiguousarray(scores).tobytes()).hexdigest()


def pack(estimates: dict, draws: dict, identity: str, patients: int, positives, fewest) -> bytes:
    header = {"estimates": estimates, "identity": identity, "patients": patients,
              "positives": list(positives) if positives is not None else None, "fewest": list(fewest),
              "metrics": list(draws)}
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
             **{f"draws{i}": np.asarray(draws[m], dtype=np.float64) for i, m in enumerate(draws)})
    return buffer.getvalue()


def unpack(payload: bytes) -> tuple:
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        header = json.loads(arrays["header"].tobytes().decode())
        draws = {m: arrays[f"draws{i}"] for i, m in enumerate(header["metrics"])}
    positives = tuple(header["positives"]) if header["positives"] is not None else None
    return (header["estimates"], draws, header["identity"], header["patients"], positives, tuple(header["fewest"]))

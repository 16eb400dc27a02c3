"""The report's per-job statistics (the metrics on the whole test split and under every patient resample, with what
the ranking needs to know of the split), kept in the store by (job, statistic, resample count, seed, statistic
version): a report after new jobs computes only theirs. A job's predictions never change (a changed job is a new
key), and every job of a test split draws the same resamples from the same patients, so cached draws stay paired with
new ones. Payloads are plain arrays (np.savez, no pickle) with a JSON header."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3

import numpy as np

LEADERBOARD = "leaderboard"
CLINICAL = "clinical"
VERSIONS = {LEADERBOARD: 2, CLINICAL: 1}  # bump when a statistic's computation changes: older payloads are ignored


def digest(scores: np.ndarray) -> str:
    """What identifies a job's predictions (runs that gave the same predictions are 'identical')."""
    return hashlib.sha1(np.ascontiguousarray(scores).tobytes()).hexdigest()


def pack(estimates: dict, draws: dict, **header) -> bytes:
    header = {**header, "estimates": estimates, "metrics": list(draws)}
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
             **{f"draws{i}": np.asarray(draws[m], dtype=np.float64) for i, m in enumerate(draws)})
    return buffer.getvalue()


def unpack(payload: bytes) -> tuple[dict, dict, dict]:
    """(estimates, draws, the rest of the header)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        header = json.loads(arrays["header"].tobytes().decode())
        draws = {m: arrays[f"draws{i}"] for i, m in enumerate(header.pop("metrics"))}
    return header.pop("estimates"), draws, header


class StatCache:
    """One statistic's cached payloads for one report: read once, new ones collected and written at the end."""

    def __init__(self, store, statistic: str, resamples: int, seed: int):
        self.store, self.key = store, (statistic, resamples, seed, VERSIONS[statistic])
        self.found = store.cached_stats(*self.key)  # unpacked when asked for: a report asks per dataset
        self.computed: dict[str, bytes] = {}

    def get(self, job: str) -> tuple[dict, dict, dict] | None:
        return unpack(self.found[job]) if job in self.found else None

    def put(self, job: str, estimates: dict, draws: dict, **header) -> None:
        self.computed[job] = pack(estimates, draws, **header)

    def save(self) -> None:
        if not self.computed:
            return
        try:
            self.store.save_stats(*self.key, self.computed)
        except (sqlite3.Error, OSError):  # a read-only store (a shared results folder): report it, cache nothing
            pass
        self.computed = {}

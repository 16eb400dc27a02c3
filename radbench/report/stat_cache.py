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
VERSIONS = {LEADERBOARD: 3, CLINICAL: 2}  # bump when a statistic's computation changes: older payloads are ignored
HEADERS = {LEADERBOARD: {"identity", "patients", "positives", "fewest"}, CLINICAL: {"identity"}}  # what readers use


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


def _check(estimates, draws: dict, header: dict, resamples: int) -> None:
    """What a payload of this version holds: numbers per metric, `resamples` draws of each."""
    if not isinstance(estimates, dict) or not isinstance(header, dict) or set(estimates) != set(draws):
        raise ValueError("payload layout")
    for name, values in draws.items():
        if values.dtype != np.float64 or values.shape != (resamples,) or not isinstance(estimates[name], (int, float)):
            raise ValueError(f"payload of {name}")


class StatCache:
    """One statistic's cached payloads for one report: read once, new ones collected and written at the end. Only a
    cache: an entry that does not decode to what this version writes is dropped and computed again (one warning
    per report), and written over at the end."""

    def __init__(self, store, statistic: str, resamples: int, seed: int):
        self.store, self.key = store, (statistic, resamples, seed, VERSIONS[statistic])
        self.found = store.cached_stats(*self.key)  # unpacked when asked for: a report asks per dataset
        self.computed: dict[str, bytes] = {}
        self.dropped: list[str] = []

    def get(self, job: str) -> tuple[dict, dict, dict] | None:
        if job not in self.found:
            return None
        try:
            estimates, draws, header = unpack(self.found[job])
            _check(estimates, draws, header, self.key[1])
            if not HEADERS[self.key[0]] <= set(header) or header.get("job") != job:
                raise ValueError("header")  # another layout, or another job's statistics
            return estimates, draws, header
        except Exception:  # any way a payload can be damaged (zip, npy, JSON, shapes): recompute it
            del self.found[job]
            self.dropped.append(job)
            return None

    def put(self, job: str, estimates: dict, draws: dict, **header) -> None:
        self.computed[job] = pack(estimates, draws, job=job, **header)

    def save(self) -> None:
        if self.dropped:
            import warnings

            warnings.warn(f"{len(self.dropped)} damaged entr{'y' if len(self.dropped) == 1 else 'ies'} of the report's "
                          f"{self.key[0]} statistics cache (jobs {', '.join(self.dropped[:3])}"
                          f"{' ...' if len(self.dropped) > 3 else ''}) dropped and computed again", stacklevel=2)
            self.dropped = []
        if not self.computed:
            return
        try:
            self.store.save_stats(*self.key, self.computed)
        except (sqlite3.Error, OSError):  # a read-only store (a shared results folder): report it, cache nothing
            pass
        self.computed = {}

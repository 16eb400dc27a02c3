"""The store's side tables, beside the jobs: subgroup values of each dataset's samples (written at the start of a
run) and the report's cached per-job statistics (report/stat_cache.py)."""

from __future__ import annotations

from contextlib import closing

import pandas as pd


class SideTables:
    """Mixed into ResultsStore (its `_guard`, `_connect`, `_read`, `_frame`)."""

    def save_groups(self, dataset: str, sample_ids, groups: dict) -> None:
        """Subgroup values of a dataset's samples (written at the start of a run; the report joins them with any
        job's predictions on that dataset, jobs stored before the study named subgroups included)."""
        rows = [(dataset, str(sample), column, str(value)) for column, values in groups.items()
                for sample, value in zip(sample_ids, values)]
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO sample_groups VALUES (?,?,?,?)", rows)

    def cached_stats(self, statistic: str, resamples: int, seed: int, version: int) -> dict[str, bytes]:
        """job key -> payload of a report statistic computed earlier with these settings (report/stat_cache.py)."""
        return dict(self._read("SELECT job_key, payload FROM stat_cache WHERE statistic = ? AND resamples = ? AND "
                               "seed = ? AND version = ?", (statistic, resamples, seed, version)))

    def save_stats(self, statistic: str, resamples: int, seed: int, version: int, payloads: dict[str, bytes]) -> None:
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?,?)",
                             [(key, statistic, resamples, seed, version, payload) for key, payload in payloads.items()])

    def sample_groups(self, dataset: str) -> pd.DataFrame:
        """One row per sample of `dataset`, one column per subgroup column (empty frame when none stored)."""
        frame = self._frame("SELECT sample_id, name, value FROM sample_groups WHERE dataset = ?", (dataset,))
        if frame.empty:
            return pd.DataFrame()
        return frame.pivot(index="sample_id", columns="name", values="value")

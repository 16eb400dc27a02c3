"""The store's side tables, beside the jobs: subgroup values of each dataset's samples (written at the start of a
run) and the report's cached per-job statistics (report/stat_cache.py)."""

from __future__ import annotations

from contextlib import closing

import pandas as pd

STAT_CACHE_COLUMNS = ["job_key", "statistic", "resamples", "seed", "version", "payload"]
STAT_CACHE_TABLE = """CREATE TABLE IF NOT EXISTS stat_cache (
    job_key TEXT NOT NULL,
    statistic TEXT NOT NULL,
    resamples INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (job_key, statistic, resamples, seed, version)
)"""


class SideTables:
    """Mixed into ResultsStore (its `_guard`, `_connect`, `_read`, `_frame`)."""

    def save_groups(self, dataset: str, sample_ids, groups: dict) -> None:
        """Subgroup values of a dataset's samples (written at the start of a run; the report joins them with any
        job's predictions on that dataset, jobs stored before the study named subgroups included)."""
        rows = [(dataset, str(sample), column, str(value)) for column, values in groups.items()
                for sample, value in zip(sample_ids, values)]
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO sample_groups VALUES (?,?,?,?)", rows)

    def renew_stat_cache(self, conn) -> None:
        """A stat_cache table of another layout (another version's, or edited) is only a cache: dropped and made
        again, with one warning (called as a writable store opens)."""
        columns = [row[1] for row in conn.execute("PRAGMA table_info(stat_cache)")]
        if columns != STAT_CACHE_COLUMNS:
            import warnings

            conn.execute("DROP TABLE IF EXISTS stat_cache")
            conn.execute(STAT_CACHE_TABLE)
            warnings.warn(f"{self.path}: the report's statistics cache had another layout ({', '.join(columns)}); "
                          "emptied — the next report computes its statistics again", stacklevel=3)

    def cached_stats(self, statistic: str, resamples: int, seed: int, version: int) -> dict[str, bytes]:
        """job key -> payload of a report statistic computed earlier with these settings (report/stat_cache.py);
        nothing where the table is not this version's (a read-only store of another layout)."""
        if [row[0] for row in self._read("SELECT name FROM pragma_table_info('stat_cache')")] != STAT_CACHE_COLUMNS:
            return {}
        return dict(self._read("SELECT job_key, payload FROM stat_cache WHERE statistic = ? AND resamples = ? AND "
                               "seed = ? AND version = ?", (statistic, resamples, seed, version)))

    def save_stats(self, statistic: str, resamples: int, seed: int, version: int, payloads: dict[str, bytes]) -> None:
        if getattr(self, "read_only", False):  # a shared read-only results folder: reported, nothing cached
            return
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?,?)",
                             [(key, statistic, resamples, seed, version, payload) for key, payload in payloads.items()])

    def sample_groups(self, dataset: str) -> pd.DataFrame:
        """One row per sample of `dataset`, one column per subgroup column (empty frame when none stored)."""
        frame = self._frame("SELECT sample_id, name, value FROM sample_groups WHERE dataset = ?", (dataset,))
        if frame.empty:
            return pd.DataFrame()
        return frame.pivot(index="sample_id", columns="name", values="value")

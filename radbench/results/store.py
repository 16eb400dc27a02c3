"""The results store: one SQLite file per output folder.

A job's row, its metrics and its per-sample test predictions are written in one transaction when the job
finishes, so a run killed at any moment (even SIGKILL) leaves either the whole job or nothing; a rerun
skips every job whose key is present."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    protocol_type TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 0,
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    selected TEXT NOT NULL,
    candidates TEXT NOT NULL,
    details TEXT NOT NULL,
    timings TEXT NOT NULL,
    feature_cache TEXT,
    radbench_version TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    job_key TEXT NOT NULL REFERENCES jobs(key),
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_key, split, name)
);
CREATE TABLE IF NOT EXISTS sample_metrics (
    job_key TEXT NOT NULL REFERENCES jobs(key),
    sample_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_key, sample_id, name)
);
CREATE TABLE IF NOT EXISTS predictions (
    job_key TEXT PRIMARY KEY REFERENCES jobs(key),
    class_names TEXT NOT NULL,
    sample_ids TEXT NOT NULL,
    targets BLOB NOT NULL,
    scores BLOB NOT NULL,
    shape TEXT NOT NULL
);
"""


@dataclass
class JobRecord:
    key: str
    study: str
    backbone: str
    dataset: str
    protocol: str
    protocol_type: str
    seed: int
    repeat: int
    task: str
    config: dict
    selected: dict
    candidates: list
    details: dict
    timings: dict
    feature_cache: str | None
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    class_names: tuple[str, ...]
    sample_ids: list[str]
    test_targets: np.ndarray | None  # classification: per-sample targets and scores; None for segmentation
    test_scores: np.ndarray | None
    extra_metrics: dict[str, float] = field(default_factory=dict)  # e.g. costs, reported with the test metrics
    sample_metrics: list[dict] | None = None  # segmentation: one dict per test case (sample_id + metrics)


def _dumps(value) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class ResultsStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "repeat" not in columns:  # stores written before repeats existed
                conn.execute("ALTER TABLE jobs ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def finished_keys(self) -> set[str]:
        with closing(self._connect()) as conn:
            return {row[0] for row in conn.execute("SELECT key FROM jobs")}

    def has(self, key: str) -> bool:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT 1 FROM jobs WHERE key = ?", (key,)).fetchone() is not None

    def save(self, record: JobRecord) -> None:
        from radbench import __version__

        metrics = [(record.key, "val", n, _real(v)) for n, v in record.val_metrics.items()]
        metrics += [(record.key, "test", n, _real(v)) for n, v in {**record.test_metrics, **record.extra_metrics}.items()]
        with closing(self._connect()) as conn, conn:  # one transaction: all of the job or none of it
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO jobs (key, study, backbone, dataset, protocol, protocol_type, seed, repeat, "
                "task, config, selected, candidates, details, timings, feature_cache, radbench_version, finished_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.key, record.study, record.backbone, record.dataset, record.protocol, record.protocol_type,
                 record.seed, record.repeat, record.task, _dumps(record.config), _dumps(record.selected),
                 _dumps(record.candidates), _dumps(record.details), _dumps(record.timings), record.feature_cache,
                 __version__, time.strftime("%Y-%m-%dT%H:%M:%S")),
            )
            conn.execute("DELETE FROM metrics WHERE job_key = ?", (record.key,))
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?)", metrics)
            if record.test_scores is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?)",
                    (record.key, _dumps(list(record.class_names)), _dumps(list(record.sample_ids)),
                     record.test_targets.astype(np.float32).tobytes(), record.test_scores.astype(np.float64).tobytes(),
                     _dumps(list(record.test_scores.shape))),
                )
            conn.execute("DELETE FROM sample_metrics WHERE job_key = ?", (record.key,))
            conn.executemany("INSERT INTO sample_metrics VALUES (?,?,?,?)", [
                (record.key, case["sample_id"], name, _real(value))
                for case in record.sample_metrics or [] for name, value in case.items() if name != "sample_id"])

    def jobs(self) -> pd.DataFrame:
        with closing(self._connect()) as conn:
            return pd.read_sql_query("SELECT * FROM jobs ORDER BY backbone, dataset, protocol, seed, repeat", conn)

    def metrics(self, split: str = "test") -> pd.DataFrame:
        query = """SELECT j.key AS job, j.study, j.backbone, j.dataset, j.protocol, j.seed, j.repeat,
                          m.name AS metric, m.value, j.config
                   FROM metrics m JOIN jobs j ON j.key = m.job_key WHERE m.split = ?
                   ORDER BY j.backbone, j.dataset, j.protocol, j.seed, j.repeat, m.name"""
        with closing(self._connect()) as conn:
            return pd.read_sql_query(query, conn, params=(split,))

    def sample_metrics(self) -> pd.DataFrame:
        query = """SELECT j.backbone, j.dataset, j.protocol, j.seed, j.repeat, s.sample_id, s.name AS metric, s.value,
                          j.key AS job
                   FROM sample_metrics s JOIN jobs j ON j.key = s.job_key
                   ORDER BY j.backbone, j.dataset, j.protocol, j.seed, j.repeat, s.sample_id, s.name"""
        with closing(self._connect()) as conn:
            return pd.read_sql_query(query, conn)

    def has_predictions(self, key: str) -> bool:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT 1 FROM predictions WHERE job_key = ?", (key,)).fetchone() is not None

    def predictions(self, key: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        """(class_names, sample_ids, targets, scores) of one job's test predictions."""
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT class_names, sample_ids, targets, scores, shape FROM predictions WHERE job_key = ?", (key,)
            ).fetchone()
        if row is None:
            raise KeyError(key)
        shape = tuple(json.loads(row[4]))
        targets = np.frombuffer(row[2], dtype=np.float32).reshape(shape)
        scores = np.frombuffer(row[3], dtype=np.float64).reshape(shape)  # exact scores the metrics used
        return json.loads(row[0]), json.loads(row[1]), targets, scores


def _real(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value

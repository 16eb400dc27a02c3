"""The results store: one SQLite file per output folder.

A job's row, its metrics and its per-sample test predictions are written in one transaction when the job
finishes, so a run killed at any moment (even SIGKILL) leaves either the whole job or nothing; a rerun
skips every job whose key is present. Processes sharing an output_dir split the work through claims: a job
(or an extraction unit) is computed by the process that claimed it; a claim whose process died (same machine)
or stopped its heartbeat (any machine) is taken over."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.results import prediction_blobs as blobs
from radbench.results.plan_records import PlanRecords, claim_alive, describe_claim
from radbench.results.side_tables import SideTables
from radbench.results.store_file import LOCK_WAIT_SECONDS, StoreError, check_store_file, guarded

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
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
    job_key TEXT PRIMARY KEY REFERENCES jobs(key),
    class_names TEXT NOT NULL,
    sample_ids TEXT NOT NULL,
    targets BLOB NOT NULL,
    scores BLOB NOT NULL,
    shape TEXT NOT NULL,
    patient_ids TEXT
);
CREATE TABLE IF NOT EXISTS planned_units (
    study TEXT NOT NULL,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    PRIMARY KEY (study, backbone, dataset)
);
CREATE TABLE IF NOT EXISTS planned_jobs (
    key TEXT PRIMARY KEY,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_groups (
    dataset TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (dataset, sample_id, name)
);
CREATE TABLE IF NOT EXISTS stat_cache (
    job_key TEXT NOT NULL,
    statistic TEXT NOT NULL,
    resamples INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (job_key, statistic, resamples, seed, version)
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    backbone TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    repeat INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
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
    patient_ids: list[str] | None = None  # of the test samples: what a bootstrap resamples
    evaluations: list["JobRecord"] = field(default_factory=list)  # its model on extra test sets: rows of their own


def _dumps(value) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


HEARTBEAT_SECONDS = 15.0


class ResultsStore(PlanRecords, SideTables):
    journal_mode = "WAL"  # readers do not block the writer; shards (one writer, maybe over NFS) use DELETE

    def __init__(self, path: Path):
        self.path = Path(path)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"{self.path.parent}: cannot create the output folder ({error.strerror})") from None
        self.check_file()  # read-only: a damaged or foreign file is refused before anything is written
        with self._guard(), closing(self._connect_first()) as conn:
            conn.executescript(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "repeat" not in columns:  # stores written before repeats existed
                conn.execute("ALTER TABLE jobs ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0")
            if "patient_ids" not in {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}:
                conn.execute("ALTER TABLE predictions ADD COLUMN patient_ids TEXT")  # stores from before

    def check_file(self) -> None:
        check_store_file(self.path)

    def _guard(self):
        return guarded(self.path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=LOCK_WAIT_SECONDS, uri=True)  # uri: read-only ATTACH of shards
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _connect_first(self) -> sqlite3.Connection:
        """The first connection switches the store to WAL (persistent, so later connections need not). SQLite
        answers "locked" at once, without waiting, when several processes switch one new file together: retry."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            conn = self._connect()
            try:
                conn.execute(f"PRAGMA journal_mode={self.journal_mode}")
                return conn
            except sqlite3.OperationalError as error:
                conn.close()
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.1))

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        with self._guard(), closing(self._connect()) as conn:
            return conn.execute(query, params).fetchall()

    def _frame(self, query: str, params: tuple = ()) -> pd.DataFrame:
        with self._guard(), closing(self._connect()) as conn:
            return pd.read_sql_query(query, conn, params=params)

    # -- claims: several processes on one output_dir split the work ------------------------------------------

    def claim(self, key: str) -> bool:
        """Take `key` (a job or an extraction unit) for this process: False when it is finished, or claimed by a
        live process. A claim of a dead process is taken over."""
        host, pid = socket.gethostname(), os.getpid()
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM jobs WHERE key = ?", (key,)).fetchone() is not None:
                return False
            row = conn.execute("SELECT owner, host, pid, heartbeat FROM claims WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] != self.owner and claim_alive(*row[1:]):
                return False
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)", (key, self.owner, host, pid, time.time()))
            return True

    def release(self, key: str) -> None:
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))

    def claimed_elsewhere(self, key: str) -> bool:
        return self.claim_holder(key) is not None

    def claim_holder(self, key: str) -> str | None:
        """`host:pid, heartbeat N s ago` of the live process (not this one) holding `key`, else None."""
        row = self._read("SELECT owner, host, pid, heartbeat FROM claims WHERE key = ?", (key,))
        if not row or row[0][0] == self.owner or not claim_alive(*row[0][1:]):
            return None
        return describe_claim(*row[0][1:])

    @contextlib.contextmanager
    def heartbeat(self):
        """Keep this process's claims fresh while the block runs (other machines see it alive); drop them after."""
        stop = threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT_SECONDS):
                with contextlib.suppress(sqlite3.Error), closing(self._connect()) as conn, conn:
                    conn.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?", (time.time(), self.owner))

        thread = threading.Thread(target=beat, daemon=True, name="radbench-claims")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(sqlite3.Error, StoreError), self._guard(), closing(self._connect()) as conn, conn:
                conn.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    def finished_keys(self) -> set[str]:
        return {row[0] for row in self._read("SELECT key FROM jobs")}

    def has(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM jobs WHERE key = ?", (key,)))

    def save(self, record: JobRecord) -> bool:
        """Store a finished job, the rows of its extra test sets, and drop its claim, in one transaction. False
        (nothing written) when all of them are stored: a row is never overwritten by a second computation. A job
        stored before its study asked for extra test sets gains only the missing rows."""
        with self._guard(), closing(self._connect()) as conn, conn:  # one transaction: all of the job or none
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM claims WHERE key = ?", (record.key,))
            conn.execute("DELETE FROM failures WHERE key = ?", (record.key,))
            written = [self._insert(conn, row) for row in (record, *record.evaluations)]
        return any(written)

    @staticmethod
    def _insert(conn: sqlite3.Connection, record: JobRecord) -> bool:
        from radbench import __version__

        if conn.execute("SELECT 1 FROM jobs WHERE key = ?", (record.key,)).fetchone() is not None:
            return False
        metrics = [(record.key, "val", n, _real(v)) for n, v in record.val_metrics.items()]
        metrics += [(record.key, "test", n, _real(v)) for n, v in {**record.test_metrics, **record.extra_metrics}.items()]
        conn.execute(
            "INSERT INTO jobs (key, study, backbone, dataset, protocol, protocol_type, seed, repeat, "
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
                "INSERT OR REPLACE INTO predictions (job_key, class_names, sample_ids, targets, scores, shape, "
                "patient_ids) VALUES (?,?,?,?,?,?,?)",
                (record.key, _dumps(list(record.class_names)), blobs.pack_ids(record.sample_ids),
                 blobs.pack_targets(record.test_targets), blobs.pack_scores(record.test_scores),
                 _dumps(list(record.test_scores.shape)),
                 None if record.patient_ids is None else blobs.pack_ids(record.patient_ids)),
            )
        conn.execute("DELETE FROM sample_metrics WHERE job_key = ?", (record.key,))
        conn.executemany("INSERT INTO sample_metrics VALUES (?,?,?,?)", [
            (record.key, case["sample_id"], name, _real(value))
            for case in record.sample_metrics or [] for name, value in case.items() if name != "sample_id"])
        return True

    def superseded(self) -> set[str]:
        """Jobs that a later job of the same backbone, dataset, protocol, seed, repeat and stored config replaces:
        the same job re-keyed because its data's identity changed (an edited label file). They stay in the file;
        the tables, results and report show the newer one only, never the two side by side."""
        rows = self._read("SELECT key, backbone, dataset, protocol, seed, repeat, config FROM jobs ORDER BY rowid")
        latest = {tuple(row[1:]): row[0] for row in rows}
        return {row[0] for row in rows} - set(latest.values())

    def jobs(self) -> pd.DataFrame:
        frame = self._frame("SELECT * FROM jobs ORDER BY backbone, dataset, protocol, seed, repeat")
        return self._current(frame, "key")

    def metrics(self, split: str = "test") -> pd.DataFrame:
        query = """SELECT j.key AS job, j.study, j.backbone, j.dataset, j.protocol, j.seed, j.repeat,
                          m.name AS metric, m.value, j.config
                   FROM metrics m JOIN jobs j ON j.key = m.job_key WHERE m.split = ?
                   ORDER BY j.backbone, j.dataset, j.protocol, j.seed, j.repeat, m.name"""
        return self._current(self._frame(query, (split,)), "job")

    def sample_metrics(self) -> pd.DataFrame:
        query = """SELECT j.backbone, j.dataset, j.protocol, j.seed, j.repeat, s.sample_id, s.name AS metric, s.value,
                          j.key AS job
                   FROM sample_metrics s JOIN jobs j ON j.key = s.job_key
                   ORDER BY j.backbone, j.dataset, j.protocol, j.seed, j.repeat, s.sample_id, s.name"""
        return self._current(self._frame(query), "job")

    def _current(self, frame: pd.DataFrame, column: str) -> pd.DataFrame:
        old = self.superseded()
        return frame[~frame[column].isin(old)].reset_index(drop=True) if old else frame

    def unusable_predictions(self) -> dict[str, str]:
        """Jobs whose test predictions a report cannot use, with why: none stored (and no per-case metrics), or a
        blob whose size does not match its recorded shape (a torn or edited row). Read without loading blobs."""
        rows = self._read(
            "SELECT j.key, p.shape, substr(p.targets, 1, 4), length(p.targets), length(p.scores), "
            "p.job_key IS NOT NULL, EXISTS (SELECT 1 FROM sample_metrics s WHERE s.job_key = j.key) FROM jobs j "
            "LEFT JOIN predictions p ON p.job_key = j.key")
        problems = {}
        for key, shape, targets_head, target_bytes, score_bytes, stored, cases in rows:
            if not stored:
                if not cases:
                    problems[key] = "no stored test predictions"
                continue
            try:
                why = blobs.plausible(tuple(json.loads(shape)), targets_head, target_bytes, score_bytes)
            except (ValueError, TypeError):
                why = "unreadable shape"
            if why:
                problems[key] = f"predictions damaged ({why})"
        return problems

    def largest_test_split(self) -> int:
        """Samples (or segmentation cases) of the largest stored test split: what a bootstrap's memory scales with."""
        shapes = [json.loads(row[0])[0] for row in self._read("SELECT DISTINCT shape FROM predictions")
                  if row[0] and row[0].startswith("[")]
        cases = self._read("SELECT MAX(n) FROM (SELECT COUNT(DISTINCT sample_id) AS n FROM sample_metrics "
                           "GROUP BY job_key)")
        return max([*shapes, cases[0][0] or 0, 0])

    def has_predictions(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM predictions WHERE job_key = ?", (key,)))

    def predictions(self, key: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        """(class_names, sample_ids, targets, scores) of one job's test predictions."""
        rows = self._read(
            "SELECT class_names, sample_ids, targets, scores, shape FROM predictions WHERE job_key = ?", (key,))
        if not rows:
            raise KeyError(key)
        row = rows[0]
        shape = tuple(json.loads(row[4]))
        try:
            targets, scores = blobs.unpack_targets(row[2], shape), blobs.unpack_scores(row[3], shape)
        except blobs.DamagedPredictions as error:
            raise StoreError(f"{self.path}: job {key}: predictions damaged ({error})") from None
        return json.loads(row[0]), blobs.unpack_ids(row[1]), targets, scores

    def patient_ids(self, key: str) -> list[str]:
        """The patients of one job's test samples (stores from before they were kept: each sample its own)."""
        rows = self._read("SELECT sample_ids, patient_ids FROM predictions WHERE job_key = ?", (key,))
        if not rows:
            raise KeyError(key)
        return blobs.unpack_ids(rows[0][1] if rows[0][1] is not None else rows[0][0])


def _real(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value

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

from radbench.results.plan_records import PlanRecords, claim_alive, describe_claim
from radbench.results.prediction_rows import PredictionRows, insert_predictions
from radbench.results.schema import SCHEMA
from radbench.results.side_tables import STAT_CACHE_TABLE, SideTables
from radbench.results.store_file import (
    LOCK_WAIT_SECONDS,
    StoreError,
    check_store_file,
    connect_read_only,
    guarded,
)

PER_CASE_TASKS = ("segmentation", "retrieval")  # jobs stored as per-case metrics, without predictions


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
    sample_metrics: list[dict] | None = None  # segmentation, retrieval: one dict per test case (sample_id + metrics)
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


class ResultsStore(PlanRecords, SideTables, PredictionRows):
    journal_mode = "WAL"  # readers do not block the writer; shards (one writer, maybe over NFS) use DELETE

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.read_only = read_only  # a folder this user cannot write (shared results): read, never write
        self._warned = False
        if read_only:
            self.check_file()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"{self.path.parent}: cannot create the output folder ({error.strerror})") from None
        self.check_file()  # read-only: a damaged or foreign file is refused before anything is written
        with self._guard(), closing(self._connect_first()) as conn:
            conn.executescript(SCHEMA + STAT_CACHE_TABLE + ";")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "repeat" not in columns:  # stores written before repeats existed
                conn.execute("ALTER TABLE jobs ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0")
            stored = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
            for column in ("patient_ids", "checksums"):  # stores from before these were kept
                if column not in stored:
                    conn.execute(f"ALTER TABLE predictions ADD COLUMN {column} TEXT")
            if "patient_id" not in {row[1] for row in conn.execute("PRAGMA table_info(sample_metrics)")}:
                conn.execute("ALTER TABLE sample_metrics ADD COLUMN patient_id TEXT")  # stores from before
            self.renew_stat_cache(conn)

    def check_file(self) -> None:
        check_store_file(self.path)

    def _guard(self):
        return guarded(self.path)

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        conn = sqlite3.connect(self.path, timeout=LOCK_WAIT_SECONDS, uri=True)  # uri: read-only ATTACH of shards
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        warn, self._warned = not self._warned, True
        return connect_read_only(self.path, warn)

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
            insert_predictions(conn, record.key, record.class_names, record.sample_ids, record.test_targets,
                               record.test_scores, record.patient_ids)
        conn.execute("DELETE FROM sample_metrics WHERE job_key = ?", (record.key,))
        cases = record.sample_metrics or []
        patients = record.patient_ids if record.patient_ids and len(record.patient_ids) == len(cases) else \
            [None] * len(cases)
        conn.executemany("INSERT INTO sample_metrics (job_key, sample_id, name, value, patient_id) VALUES (?,?,?,?,?)",
                         [(record.key, case["sample_id"], name, _real(value), patient)
                          for case, patient in zip(cases, patients) for name, value in case.items()
                          if name != "sample_id"])
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
                          j.key AS job, {patient}
                   FROM sample_metrics s JOIN jobs j ON j.key = s.job_key
                   ORDER BY j.backbone, j.dataset, j.protocol, j.seed, j.repeat, s.sample_id, s.name"""
        kept = any(row[1] == "patient_id" for row in self._read("PRAGMA table_info(sample_metrics)"))
        query = query.format(patient="s.patient_id" if kept else "NULL AS patient_id")  # a read-only older store
        return self._current(self._frame(query), "job")

    def _current(self, frame: pd.DataFrame, column: str) -> pd.DataFrame:
        old = self.superseded()
        return frame[~frame[column].isin(old)].reset_index(drop=True) if old else frame

def _real(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value

"""A job's test predictions in the store: one row of blobs (results/prediction_blobs.py) and, since this version,
a checksum of each blob, so that a blob changed after it was written (a damaged disk, an edit, a torn copy) is
named and left out of every table instead of being read as numbers. Rows written before checksums existed are
checked by their sizes and by decoding; `radbench verify` recomputes their metrics."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import xxhash

from radbench.results import prediction_blobs as blobs
from radbench.results.store_file import StoreError

BLOBS = ("targets", "scores", "sample_ids", "patient_ids")


def checksum(blob: bytes | str | None) -> str | None:
    if blob is None:
        return None
    return xxhash.xxh3_64_hexdigest(blob.encode() if isinstance(blob, str) else bytes(blob))


def insert_predictions(conn: sqlite3.Connection, key: str, class_names, sample_ids, targets: np.ndarray,
                       scores: np.ndarray, patient_ids) -> None:
    packed = {"targets": blobs.pack_targets(targets), "scores": blobs.pack_scores(scores),
              "sample_ids": blobs.pack_ids(sample_ids),
              "patient_ids": None if patient_ids is None else blobs.pack_ids(patient_ids)}
    conn.execute(
        "INSERT OR REPLACE INTO predictions (job_key, class_names, sample_ids, targets, scores, shape, patient_ids, "
        "checksums) VALUES (?,?,?,?,?,?,?,?)",
        (key, json.dumps([str(c) for c in class_names]), packed["sample_ids"], packed["targets"], packed["scores"],
         json.dumps([int(n) for n in scores.shape]), packed["patient_ids"],
         json.dumps({name: checksum(value) for name, value in packed.items()})))


def damage(row: dict) -> str:
    """Why a predictions row cannot be read ('' when it can): a blob whose checksum differs (which one), or, for
    rows without checksums, sizes that do not fit the shape or a blob that does not decode."""
    try:
        shape = tuple(json.loads(row["shape"]))
        if not shape or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError
    except (ValueError, TypeError):
        return "unreadable shape"
    if row.get("checksums"):
        try:
            expected = json.loads(row["checksums"])
        except ValueError:
            return "unreadable checksums"
        changed = [name for name in BLOBS if expected.get(name) != checksum(row[name])]
        if changed:
            return f"{', '.join(changed)} changed since written (checksum differs)"
    why = blobs.plausible(shape, bytes(row["targets"] or b"")[:4], len(row["targets"] or b""),
                          len(row["scores"] or b""))
    if why:
        return why
    try:
        blobs.unpack_targets(row["targets"], shape)
        blobs.unpack_scores(row["scores"], shape)
        for name in ("sample_ids", "patient_ids"):
            if row[name] is not None and len(blobs.unpack_ids(row[name])) != shape[0]:
                return f"{name}: not one per sample"
    except (blobs.DamagedPredictions, ValueError, TypeError) as error:
        return str(error)
    return ""


class PredictionRows:
    """Mixed into ResultsStore (its `_guard`, `_connect`, `_read`, `path`)."""

    _unusable: dict[str, str] | None = None

    def unusable_predictions(self) -> dict[str, str]:
        """Jobs whose test predictions cannot be used, with why: none stored (and no per-case metrics), or a damaged
        row (see `damage`). Every blob is read and hashed once per store object, row by row."""
        if self._unusable is not None:
            return dict(self._unusable)
        problems = {}
        with self._guard(), _closing(self._connect()) as conn:
            conn.row_factory, conn.text_factory = sqlite3.Row, _text
            query = ("SELECT j.key AS key, p.job_key AS stored, p.shape, p.targets, p.scores, p.sample_ids, "
                     "p.patient_ids, p.checksums, EXISTS (SELECT 1 FROM sample_metrics s WHERE s.job_key = j.key) "
                     "AS cases FROM jobs j LEFT JOIN predictions p ON p.job_key = j.key")
            for row in conn.execute(query):
                if row["stored"] is None:
                    if not row["cases"]:
                        problems[row["key"]] = "no stored test predictions"
                    continue
                why = damage(dict(row))
                if why:
                    problems[row["key"]] = f"predictions damaged ({why})"
        self._unusable = problems
        return dict(problems)

    def damaged_predictions(self) -> dict[str, str]:
        """The jobs whose stored predictions are damaged (jobs that have none are not counted)."""
        return {key: why for key, why in self.unusable_predictions().items() if why.startswith("predictions damaged")}

    def largest_test_split(self) -> int:
        """Samples (or segmentation cases) of the largest stored test split: what a bootstrap's memory scales with."""
        shapes = []
        for (shape,) in self._read("SELECT DISTINCT shape FROM predictions"):
            try:
                shapes.append(int(json.loads(shape)[0]))
            except (ValueError, TypeError, IndexError, KeyError):
                continue  # a damaged row: named where predictions are read
        cases = self._read("SELECT MAX(n) FROM (SELECT COUNT(DISTINCT sample_id) AS n FROM sample_metrics "
                           "GROUP BY job_key)")
        return max([*shapes, cases[0][0] or 0, 0])

    def has_predictions(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM predictions WHERE job_key = ?", (key,)))

    def _row(self, key: str) -> dict:
        with self._guard(), _closing(self._connect()) as conn:
            conn.row_factory, conn.text_factory = sqlite3.Row, _text
            row = conn.execute("SELECT * FROM predictions WHERE job_key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        row = dict(row)
        why = damage(row)
        if why:
            raise StoreError(f"{self.path}: job {key}: predictions damaged ({why})")
        return row

    def predictions(self, key: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        """(class_names, sample_ids, targets, scores) of one job's test predictions (checked: a damaged row is a
        StoreError naming it)."""
        row = self._row(key)
        shape = tuple(json.loads(row["shape"]))
        return (json.loads(row["class_names"]), blobs.unpack_ids(row["sample_ids"]),
                blobs.unpack_targets(row["targets"], shape), blobs.unpack_scores(row["scores"], shape))

    def patient_ids(self, key: str) -> list[str]:
        """The patients of one job's test samples (stores from before they were kept: each sample its own)."""
        row = self._row(key)
        return blobs.unpack_ids(row["patient_ids"] if row["patient_ids"] is not None else row["sample_ids"])


def _text(value: bytes) -> str:
    """Text columns as text even where a damaged row holds bytes that are not UTF-8 (they then fail to decode as
    JSON, and the row is named), instead of an error that stops the whole read."""
    return value.decode("utf-8", errors="replace")


def _closing(conn):
    from contextlib import closing

    return closing(conn)

"""Dataset fingerprints from each file's path, size and modification time — cheap for 100k images — where a file
whose time changed but whose bytes did not (`touch labels.csv`, a copy that kept the bytes) keeps the time it
was first fingerprinted with. A small memo of content digests per cache folder tells the two apart, so content,
not the clock, decides what changed. Without a memo (a dataset loaded outside a study) the time counts as is.

Digests are taken when a file is first seen for label tables and lists always, and for every file of a dataset
whose files add up to at most EAGER_BYTES (reading 100k images once just to fingerprint them would cost more
than it saves); a large dataset's touched image is then treated as changed, as before."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

EAGER_BYTES = 2 << 30
FINGERPRINT_MEMO = "file-digests.sqlite"  # in the study's cache folder
_memo: dict = {"path": None, "pending": []}

_SCHEMA = "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, seen INTEGER, digest TEXT, keyed INTEGER)"


@contextlib.contextmanager
def digest_memo(path: Path, write: bool = True):
    """Fingerprints computed inside the block consult the memo at `path`; what they learnt is written when the
    block ends without an error (a data error leaves no folder behind) and `write` is set (`plan` only reads)."""
    previous = dict(_memo)
    _memo.update(path=Path(path), pending=[])
    try:
        yield
        if write and _memo["pending"]:
            _write(Path(path), _memo["pending"])
    finally:
        _memo.update(previous)


def file_fingerprint(paths, extra: str = "", tables=()) -> str:
    """Identity of a set of files (and the settings in `extra`); `tables` (label files, lists) are digested
    from the first sight whatever their size."""
    stats = [Path(p).stat() for p in paths]
    times = _stable_times([Path(p) for p in paths], stats, {str(Path(t)) for t in tables})
    digest = hashlib.sha256(extra.encode())
    for path, stat, mtime in zip(paths, stats, times):
        digest.update(f"{path}\0{stat.st_size}\0{mtime}\n".encode())
    return digest.hexdigest()[:20]


def content_digest(path: Path) -> str:
    import xxhash

    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stable_times(paths: list[Path], stats: list, tables: set[str]) -> list[int]:
    memo_path = _memo["path"]
    if memo_path is None:
        return [stat.st_mtime_ns for stat in stats]
    eager_all = sum(stat.st_size for stat in stats) <= EAGER_BYTES
    known = _read(memo_path, [str(p) for p in paths])
    times, updates = [], []
    for path, stat in zip(paths, stats):
        name, size, mtime = str(path), stat.st_size, stat.st_mtime_ns
        row = known.get(name)
        if row is not None and row[0] == size and row[1] == mtime:
            times.append(row[3])
            continue
        digest = content_digest(path) if (eager_all or name in tables or row is not None and row[2]) else None
        if row is not None and row[0] == size and row[2] is not None and row[2] == digest:
            times.append(row[3])  # touched, same bytes: keyed as before
            updates.append((name, size, mtime, digest, row[3]))
        else:
            times.append(mtime)
            updates.append((name, size, mtime, digest, mtime))
    _memo["pending"].extend(updates)
    return times


def _read(memo_path: Path, names: list[str]) -> dict[str, tuple]:
    if not memo_path.is_file():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{memo_path}?mode=ro", uri=True, timeout=30)) as conn:
            rows = conn.execute("SELECT path, size, seen, digest, keyed FROM files").fetchall()
    except sqlite3.Error:
        return {}  # damaged or foreign: fingerprints fall back to the times themselves
    wanted = set(names)
    return {row[0]: row[1:] for row in rows if row[0] in wanted}


def _write(memo_path: Path, updates: list[tuple]) -> None:
    """Best effort: a read-only cache folder keeps fingerprints by time only."""
    with contextlib.suppress(OSError, sqlite3.Error):
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(memo_path, timeout=30)) as conn, conn:
            conn.execute(_SCHEMA)
            conn.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)", updates)

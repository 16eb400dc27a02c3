"""The results file itself: SQLite's errors as one line naming it, and the check that it is an intact radbench
store before anything is written to it."""

from __future__ import annotations

import contextlib
import sqlite3
from contextlib import closing
from pathlib import Path

from radbench.errors import RadbenchError

LOCK_WAIT_SECONDS = 60.0


class StoreError(RadbenchError):
    """The results store cannot be read or written."""



@contextlib.contextmanager
def guarded(path: Path):
    """SQLite's errors as one line naming the file and what to do."""
    try:
        yield
    except sqlite3.OperationalError as error:
        text = str(error)
        if "locked" in text or "busy" in text:
            raise
        if "disk is full" in text or "disk I/O error" in text:
            raise StoreError(f"{path}: cannot write the results store (disk full or failing: {text}); free space or "
                             "choose another output_dir; finished jobs are kept") from None
        raise StoreError(f"{path}: cannot use the results store ({text}); check the disk and the "
                         "folder's permissions") from None
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: damaged results store ({error}); move it aside (e.g. to "
                         f"{Path(path).name}.damaged) and rerun: finished jobs are then computed again") from None


def connect_read_only(path: Path, warn: bool = False) -> sqlite3.Connection:
    """A connection that never writes: `mode=ro`, which reads the write-ahead log but needs its -shm file (made
    where the folder can be written); where that cannot be (a read-only folder or mount), `immutable=1` reads the
    file as it is — with a warning where a write-ahead log holds what the file does not yet."""
    from urllib.parse import quote

    base = f"file:{quote(str(Path(path).resolve()))}"
    conn = sqlite3.connect(f"{base}?mode=ro", uri=True, timeout=LOCK_WAIT_SECONDS)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        if "unable to open" not in str(error):
            raise
    wal = Path(f"{path}-wal")
    if warn and wal.is_file() and wal.stat().st_size:
        import warnings

        warnings.warn(f"{wal}: the store's write-ahead log cannot be read from this read-only folder; jobs stored "
                      "since its last checkpoint are not shown", stacklevel=3)
    return sqlite3.connect(f"{base}?immutable=1", uri=True, timeout=LOCK_WAIT_SECONDS)


def check_store_file(path: Path) -> None:
    """The file, where there is one, is an intact radbench store (or empty): else one error line, and the file is
    left untouched (read-only connection) — so no command writes into a database radbench did not create."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with guarded(path), closing(connect_read_only(path)) as conn:
        check = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(check[0] if check else "integrity check failed")
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if tables and not {"key", "config", "radbench_version"} <= columns:
        shown = ", ".join(tables[:6]) + (" ..." if len(tables) > 6 else "")
        raise StoreError(f"{path}: not a radbench results store (its tables: {shown}); it is left as it is — "
                         "point radbench at a study's output_dir, or choose another output_dir")

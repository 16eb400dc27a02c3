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
        raise StoreError(f"{path}: cannot use the results store ({text}); check the disk and the "
                         "folder's permissions") from None
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: damaged results store ({error}); move it aside (e.g. to "
                         f"{Path(path).name}.damaged) and rerun: finished jobs are then computed again") from None


def check_store_file(path: Path) -> None:
    """The file, where there is one, is an intact radbench store (or empty): else one error line, and the file is
    left untouched (read-only connection) — so no command writes into a database radbench did not create."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with guarded(path), closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=LOCK_WAIT_SECONDS)) as conn:
        check = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(check[0] if check else "integrity check failed")
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if tables and not {"key", "config", "radbench_version"} <= columns:
        shown = ", ".join(tables[:6]) + (" ..." if len(tables) > 6 else "")
        raise StoreError(f"{path}: not a radbench results store (its tables: {shown}); it is left as it is — "
                         "point radbench at a study's output_dir, or choose another output_dir")

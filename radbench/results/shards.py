"""One results folder, many writers on many machines: workers never write the shared SQLite file (whose locking
cannot be trusted on NFS). Each finished job, failure or unit plan becomes one small SQLite file of its own under
OUT/shards/, written under a temporary name and renamed, so a reader sees a whole file or none. `merge_shards`
copies them into OUT/results.sqlite idempotently (a job already there is never copied again, so a retried unit
cannot duplicate one) and removes what it merged; `radbench run` (the driver), `results`, `status` and `report`
merge before they read."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import uuid
from contextlib import closing, nullcontext
from pathlib import Path

from radbench.results.store import JobRecord, ResultsStore

SHARDS = "shards"
# per table: the rows a shard contributes, and how they meet rows already in the main store
MERGED = (("jobs", "key"), ("metrics", "job_key"), ("sample_metrics", "job_key"), ("predictions", "job_key"))


class ShardStore(ResultsStore):
    """A store in one file written by one process: a rollback journal (no WAL: it needs shared memory, which
    a file moved between machines or read over NFS cannot offer)."""

    journal_mode = "DELETE"


def shard_folder(output_dir: Path) -> Path:
    return Path(output_dir) / SHARDS


def _write_shard(output_dir: Path, kind: str, fill) -> Path:
    folder = shard_folder(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.sqlite"
    temporary = folder / f".{name}.tmp"
    fill(ShardStore(temporary))
    for leftover in (Path(f"{temporary}-journal"), Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
        leftover.unlink(missing_ok=True)
    os.replace(temporary, folder / name)
    return folder / name


class ShardWriter:
    """What the runner needs of a store, for a worker of an executor: reads see the main store plus every shard;
    each write is a new shard file. The executor gives each unit to one worker, so claims always succeed."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.main = ResultsStore(self.output_dir / "results.sqlite")  # read here; written only by merges
        self._plans: list[tuple[str, str, list]] = []

    def finished_keys(self) -> set[str]:
        keys = self.main.finished_keys()
        for path in sorted(shard_folder(self.output_dir).glob("job-*.sqlite")):
            try:
                with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                    keys |= {row[0] for row in conn.execute("SELECT key FROM jobs")}
            except sqlite3.Error:
                continue  # merged and removed meanwhile, or damaged (the next merge sets it aside): not finished
        return keys

    def claim(self, key: str) -> bool:
        return True

    def release(self, key: str) -> None:
        pass

    def claim_holder(self, key: str) -> str | None:
        return None

    def clear_unit_failures(self, *args) -> None:
        pass  # the driver clears a unit's failure when the unit comes back done

    def heartbeat(self):
        return nullcontext()

    def plan_units(self, study: str, units: list[tuple[str, str]]) -> None:
        pass  # the driver plans the units (it knows the whole study)

    def plan_jobs(self, backbone: str, dataset: str, jobs: list) -> None:
        _write_shard(self.output_dir, "plan", lambda store: store.plan_jobs(backbone, dataset, jobs))

    def save(self, record: JobRecord) -> bool:
        _write_shard(self.output_dir, "job", lambda store: store.save(record))
        return True

    def save_groups(self, *args) -> None:
        _write_shard(self.output_dir, "groups", lambda store: store.save_groups(*args))

    def record_failure(self, *args, **kwargs) -> None:
        _write_shard(self.output_dir, "failure", lambda store: store.record_failure(*args, **kwargs))


def merge_shards(output_dir: Path) -> int:
    """Copy every shard into the main store (jobs not yet there; plans; failures of jobs not stored), then remove
    it. Returns the number of jobs added. Safe to run at any time, by any process, any number of times."""
    folder = shard_folder(output_dir)
    paths = sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
    if not paths:
        return 0
    main = ResultsStore(Path(output_dir) / "results.sqlite")
    added = 0
    for path in paths:
        if path.is_file():  # another process (a rank, `radbench results`) may have merged and removed it
            added += _merge_one(main, path)
    return added


def _study_output(study: Path) -> str:
    """': <its output_dir>' when the study file can be read, else how to find it."""
    from radbench.config import load_study

    try:
        return f": {load_study(study).settings.output_dir}"
    except Exception:  # an unreadable study: say where to look instead
        return " (the study's `output_dir:`, or the --output-dir it was run with)"


def open_results(output_dir: Path) -> ResultsStore:
    """The store of a results folder for the reading commands (results, status, report, verify, the Python API):
    shards merged first where the folder can be written; a folder this user cannot write (results shared read-only)
    is read as it is, never written — unmerged shards are then left out, with one warning."""
    from radbench.errors import RadbenchError

    output_dir = Path(output_dir)
    path = output_dir / "results.sqlite"
    if output_dir.is_file() and output_dir.suffix in (".yaml", ".yml"):
        raise RadbenchError(f"{output_dir} is a study file; give its output folder{_study_output(output_dir)}")
    if not path.is_file() and not shard_folder(output_dir).is_dir():
        raise RadbenchError(f"{output_dir}: no results.sqlite here (is this a study's output_dir?)")
    if writable(output_dir) and (not path.exists() or os.access(path, os.W_OK)):
        merge_shards(output_dir)  # results of executor workers not merged yet
        return ResultsStore(path)
    if not path.is_file():
        raise RadbenchError(f"{output_dir}: no results.sqlite here, and the folder is read-only so its shards cannot "
                            "be merged into one; run `radbench results` once where it can be written")
    pending = list(shard_folder(output_dir).glob("*.sqlite"))
    if pending:
        import warnings

        warnings.warn(f"{output_dir} is read-only: {len(pending)} result shard(s) not merged yet are left out",
                      stacklevel=2)
    return ResultsStore(path, read_only=True)


def writable(folder: Path) -> bool:
    """This user may create files in `folder` (permissions and a read-only mount both say no)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _shard_intact(path: Path) -> bool | None:
    """True: a whole shard; False: damaged or empty; None: gone (another merge removed it)."""
    try:  # read-only: a shard another merge removed meanwhile is not recreated as an empty file
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok" and conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone() is not None
    except sqlite3.Error:
        return False if path.exists() else None


def _merge_one(main: ResultsStore, path: Path) -> int:
    intact = _shard_intact(path)
    if not intact:
        return 0 if intact is None else _set_aside(path, "is damaged or empty")
    with main._guard(), closing(main._connect()) as conn:
        try:
            conn.execute("ATTACH DATABASE ? AS shard", (f"file:{path}?mode=ro",))
        except sqlite3.OperationalError:
            return 0  # removed by another merge since our look
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if not path.exists():
                    return 0  # merged and removed by another process since: its rows are in the store
                conn.execute("CREATE TEMP TABLE new_keys AS SELECT key FROM shard.jobs "
                             "WHERE key NOT IN (SELECT key FROM main.jobs)")
                for table, key in MERGED:
                    columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
                    conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM shard.{table} "
                                 f"WHERE {key} IN (SELECT key FROM temp.new_keys)")
                added = conn.execute("SELECT COUNT(*) FROM temp.new_keys").fetchone()[0]
                conn.execute("DROP TABLE temp.new_keys")
                # several units share a backbone x dataset (features, each training job): plans add up
                conn.execute("INSERT OR REPLACE INTO main.planned_jobs SELECT * FROM shard.planned_jobs")
                conn.execute("INSERT OR REPLACE INTO main.sample_groups SELECT * FROM shard.sample_groups")
                conn.execute("INSERT OR REPLACE INTO main.failures SELECT * FROM shard.failures "
                             "WHERE key NOT IN (SELECT key FROM main.jobs)")
                conn.execute("DELETE FROM main.failures WHERE key IN (SELECT key FROM main.jobs)")
        finally:
            conn.execute("DETACH DATABASE shard")
    path.unlink(missing_ok=True)  # merged: its rows are in the main store (a rerun of this merge adds none)
    return added


def _set_aside(path: Path, why: str) -> int:
    """A shard that cannot be merged (a torn copy, a file of zeros) is renamed, never blamed on the store: its unit
    reruns the job it held, since the job is not stored."""
    import warnings

    aside = path.with_name(path.name + ".damaged")
    with contextlib.suppress(OSError):
        os.replace(path, aside)
    warnings.warn(f"{path} {why}: set aside as {aside.name}; the job it held runs again on the next run", stacklevel=3)
    return 0

"""Checked array files: every cached array (feature bundles, preprocessed images, token and tap maps) is written
to a temporary name, renamed into place, and committed by a record beside it (`<name>.npy.json`: shape, dtype,
byte size, xxh3 checksum, finiteness, and what the writer wants kept with it, e.g. a split's unreadable files).

The record is written last, so an array without one is an interrupted write. Opening verifies the array against
its record (once per file and process); a mismatch raises `DamagedArray` naming the file. What a cache does with
a damaged array is the run's policy: discard it and rebuild (default), or stop (`radbench run --no-repair`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from radbench.errors import RadbenchError

RECORD_SUFFIX = ".json"
CHUNK = 1 << 23
STALE_SECONDS = 24 * 3600  # a temporary file of another machine this old is from a killed process
_verified: dict[tuple, dict] = {}
_policy = {"repair": True}


class DamagedArray(RadbenchError):
    """A cached array does not match its record (or has none): never compute a result from it."""


class CacheWriteError(RadbenchError):
    """A cache or output file could not be written (read-only place, full disk, a file where a folder goes)."""


def set_repair(repair: bool) -> None:
    _policy["repair"] = repair


def repairing() -> bool:
    return _policy["repair"]


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def temporary_path(path: Path) -> Path:
    """A name no other process uses, recognisable by `clean_stale_temporaries`."""
    return path.with_name(f".{path.name}~{socket.gethostname()}~{os.getpid()}.tmp")


def checksum(path: Path) -> str:
    import xxhash

    digest = xxhash.xxh3_64()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_error(path: Path, error: OSError) -> CacheWriteError:
    reason = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.ENOTDIR: "a file stands where a folder should be", errno.EDQUOT: "disk quota exceeded"}
    why = reason.get(error.errno) or ("disk full" if _nearly_full(path) else None) or error.strerror or \
        " ".join(str(error).split())[:200] or type(error).__name__
    return CacheWriteError(f"{path}: cannot write ({why}); free space or choose another output_dir / cache_dir")


def _nearly_full(path: Path) -> bool:
    """The file system holding `path` has (almost) no room left: numpy's short writes raise an OSError without an
    errno ("N requested and M written"), so the disk is asked."""
    import shutil

    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free < 1024 * 1024
            except OSError:
                return False
    return False


def check_writable(folder: Path) -> None:
    """Fail now, in one line, where results or caches could not be written later."""
    probe = temporary_path(Path(folder) / "probe")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"radbench")
        probe.unlink()
    except OSError as error:
        _remove(probe)
        raise write_error(Path(folder), error) from None


def _finite(array: np.ndarray) -> bool:
    if not np.issubdtype(array.dtype, np.floating):
        return True
    flat = array.reshape(len(array), -1) if array.ndim else array.reshape(1, -1)
    step = max(1, CHUNK // max(1, flat.strides[0]))
    return all(np.isfinite(flat[i:i + step]).all() for i in range(0, len(flat), step))


def commit(temporary: Path, path: Path, meta: dict | None = None) -> dict:
    """Rename a fully written temporary `.npy` into place and write its record; removes the temporary on failure."""
    try:
        array = np.load(temporary, mmap_mode="r")
        record = {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": temporary.stat().st_size,
                  "xxh3": checksum(temporary), "finite": _finite(array), "meta": meta or {},
                  "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        del array
        os.replace(temporary, path)
        record_temporary = temporary_path(record_path(path))
        record_temporary.write_text(json.dumps(record, indent=1))
        os.replace(record_temporary, record_path(path))
    except OSError as error:
        _remove(temporary, temporary_path(record_path(path)))
        raise write_error(path, error) from None
    except BaseException:
        _remove(temporary, temporary_path(record_path(path)))
        raise
    return record


def write_text(path: Path, text: str) -> None:
    """Replace a small text file (a manifest, a record of checks) atomically."""
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise write_error(path, error) from None


def write(path: Path, array: np.ndarray, meta: dict | None = None) -> dict:
    """Save `array` at `path` atomically with its record."""
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        _remove(temporary)
        raise write_error(path, error) from None
    except BaseException:
        _remove(temporary)
        raise
    return commit(temporary, path, meta)


def new_memmap(path: Path, dtype, shape: tuple) -> np.memmap:
    """An array to fill in place at `path`'s temporary name; `commit(Path(array.filename), path)` finishes it
    (`filling` does both, and cleans up on failure)."""
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
    except OSError as error:
        _remove(temporary)
        raise write_error(path, error) from None


class Filling:
    """An array being filled in place at `path`'s temporary name (`create` when its shape is known); `meta` goes
    into its record."""

    def __init__(self, path: Path):
        self.path, self.array, self.meta = Path(path), None, {}

    def create(self, dtype, shape: tuple) -> np.memmap:
        self.array = new_memmap(self.path, dtype, shape)
        return self.array


@contextlib.contextmanager
def filling(path: Path, dtype=None, shape: tuple | None = None) -> Iterator[Filling]:
    """Fill an array in place: committed (renamed, recorded) when the block ends, removed when it raises."""
    fill = Filling(path)
    if dtype is not None:
        fill.create(dtype, shape)
    try:
        yield fill
    except BaseException:
        fill.array = None
        discard(temporary_path(fill.path))
        raise
    if fill.array is None:
        return
    fill.array.flush()
    temporary, fill.array = Path(fill.array.filename), None
    commit(temporary, fill.path, fill.meta)


def verify(path: Path, rows: int | None = None) -> dict:
    """The record of an intact array at `path`; raises DamagedArray saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DamagedArray(f"{path}: cached array missing")
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    record = _verified.get(memo)
    if record is None:
        record = _check(path, stat.st_size)
        _verified[memo] = record
    if rows is not None and record["shape"][0] != rows:
        raise DamagedArray(f"{path}: holds {record['shape'][0]} rows, the split has {rows}")
    return record


def _check(path: Path, size: int) -> dict:
    try:
        record = json.loads(record_path(path).read_text())
        expected = (list(record["shape"]), str(record["dtype"]), int(record["bytes"]), str(record["xxh3"]))
    except FileNotFoundError:
        raise DamagedArray(f"{path}: no record beside it (an interrupted write)") from None
    except (ValueError, KeyError, TypeError):
        raise DamagedArray(f"{record_path(path)}: unreadable record") from None
    if size != expected[2]:
        raise DamagedArray(f"{path}: {size} bytes, {expected[2]} were written (truncated or replaced)")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise DamagedArray(f"{path}: not a readable .npy ({str(error).splitlines()[0][:80]})") from None
    if list(array.shape) != expected[0] or str(array.dtype) != expected[1]:
        raise DamagedArray(f"{path}: shape {list(array.shape)} {array.dtype}, written as {expected[0]} {expected[1]}")
    if checksum(path) != expected[3]:
        raise DamagedArray(f"{path}: checksum differs from the one written (the file was altered or damaged)")
    if not record.get("finite", True) or not _finite(array):
        raise DamagedArray(f"{path}: holds NaN or infinite values")
    return record


def is_intact(path: Path, rows: int | None = None, warn=None) -> bool:
    """True when `path` verifies. A damaged array is removed (with its record) after `warn(message)` when the run
    repairs, so the caller rebuilds it; with --no-repair the DamagedArray is raised. A missing one is False."""
    if not Path(path).is_file() and not record_path(Path(path)).is_file():
        return False
    try:
        verify(path, rows)
        return True
    except DamagedArray as error:
        if not repairing():
            raise DamagedArray(f"{error}; rerun without --no-repair to rebuild it") from None
        if warn is not None:
            warn(f"{error}; discarding it and rebuilding")
        discard(path)
        return False


def discard(path: Path) -> None:
    _remove(Path(path), record_path(Path(path)))


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # gone already, or a read-only place whose error the caller reports
            path.unlink()


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files left by killed processes: this machine's whose process is gone, and any a day old."""
    removed = []
    host = socket.gethostname()
    for path in Path(folder).rglob(".*~*~*.tmp") if Path(folder).is_dir() else []:
        _, owner_host, pid = path.name[1:-len(".tmp")].rsplit("~", 2)
        try:
            old = time.time() - path.stat().st_mtime > STALE_SECONDS
        except FileNotFoundError:
            continue
        if old or (owner_host == host and not _alive(int(pid) if pid.isdigit() else -1)):
            _remove(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Writing the report: checked up front (--out a folder that can be written, --resamples within bounds and memory),
built in a temporary folder beside its target and swapped in, so that a failed or killed report leaves the
previous one whole and never half a folder."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Callable, TypeVar

from radbench.arrayfile import write_error
from radbench.errors import RadbenchError

T = TypeVar("T")
# Past 100 000 resamples the Monte-Carlo error of a 95 % interval's ends (about 0.2 % of its width at 10 000)
# is far below what the test set's own size allows; more only costs memory and time.
MAX_RESAMPLES = 100_000
BYTES_PER_DRAW = 8 * 3  # float64 patient weights, plus the per-class metric arrays of one job beside them


def check_resamples(resamples: int, largest_split: int) -> None:
    """One line, before any work, for a resample count out of bounds or one whose bootstrap would not fit."""
    need = resamples * max(1, largest_split) * BYTES_PER_DRAW
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if resamples > MAX_RESAMPLES or need > memory / 2:
        raise RadbenchError(
            f"--resamples {resamples}: the bootstrap over this store's largest test split ({largest_split} samples) "
            f"needs about {need / 2**30:.1f} GiB (this machine has {memory / 2**30:.0f} GiB); use at most "
            f"{MAX_RESAMPLES} — beyond that the intervals' Monte-Carlo error is negligible next to the test set's")


def publish(target: Path, build: Callable[[Path], T]) -> T:
    """`build(folder)` into a temporary folder beside `target`, then put it in `target`'s place."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise RadbenchError(f"--out {target}: is a file; give a folder (created if missing)")
    temporary = target.parent / f".{target.name}~{socket.gethostname()}~{os.getpid()}.tmp"
    old = target.parent / f".{target.name}~{socket.gethostname()}~{os.getpid()}.old"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
    except OSError as error:
        raise _report_error(target.parent, error) from None
    try:
        result = build(temporary)
        if target.exists():
            os.replace(target, old)
        os.replace(temporary, target)
    except OSError as error:
        raise _report_error(target, error) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return result


def _report_error(path: Path, error: OSError) -> RadbenchError:
    why = str(write_error(path, error)).split("(", 1)[1].split(")", 1)[0]
    return RadbenchError(f"{path}: cannot write the report ({why}); free space, or pass --out DIR somewhere writable")

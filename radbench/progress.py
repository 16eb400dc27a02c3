"""Console output: messages and rich progress bars on stderr, so stdout stays clean for CSV."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.log_path: Path | None = None

    def attach_log(self, path: Path) -> None:
        """Also append every message, timestamped, to `path` (a run's OUT/run.log), quiet or not."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = path

    def _log(self, level: str, message: str) -> None:
        if self.log_path is None:
            return
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"{stamp} {level} {Text.from_markup(message).plain if '[/' in message else message}\n")
        except OSError:  # a log that cannot be written must not stop the work it describes
            self.log_path = None

    def info(self, message: str) -> None:
        self._log("info", message)
        if not self.quiet:
            self.console.print(message, highlight=False)

    def note(self, message: str) -> None:
        """A line that is part of the answer (what a shrunk study leaves out): shown even when quiet."""
        self._log("note", message)
        self.console.print(f"note: {escape(message)}", highlight=False)

    def warn(self, message: str) -> None:
        self._log("warning", message)
        self.console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar; yields `advance(n)`."""
        if self.quiet:
            yield lambda n=1: None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task_id, n)

    @contextlib.contextmanager
    def steps(self, description: str, total: int, done: int = 0) -> Iterator[Callable[[int, str], None]]:
        """A progress bar for training steps with a status text after it; yields `advance(n, status)`."""
        if self.quiet:
            yield lambda n=1, status="": None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total, completed=done, status="")
            yield lambda n=1, status="": progress.update(task_id, advance=n, status=status)


class StudyProgress:
    """The line after each job: how far the whole study is, and a rough time left — per kind of job (protocol), the
    mean time of the jobs of that kind this run has computed, times that kind's jobs still to run (a kind not timed
    yet: the mean of every job so far), plus the units still to prepare at this run's mean preparation time.
    Stored jobs count as done from the start: `stored` gives each unit's count as the store's rows suggest,
    replaced by the exact count once the unit is prepared; `kinds` the jobs still to run per kind; `units` the
    units with jobs still to run."""

    def __init__(self, total: int, stored: dict[str, int] | None = None, kinds: dict[str, int] | None = None,
                 units: int = 0):
        self.total, self.ran, self.seconds, self.other = total, 0, 0.0, 0
        self.units_left, self.preparing = units, []  # units with work still to prepare; seconds each prepare took
        self.stored, self.prepared = dict(stored or {}), {}
        self.kinds = dict(kinds or {})  # kind -> jobs of it still to run
        self.timed: dict[str, list[float]] = {}  # kind -> (seconds, jobs) measured this run
        self.start = time.perf_counter()

    @property
    def done(self) -> int:
        return self.ran + self.other + sum(self.prepared.get(unit, count) for unit, count in self.stored.items()) + \
            sum(count for unit, count in self.prepared.items() if unit not in self.stored)

    def skipped(self, count: int, unit: str | None = None) -> None:
        """`count` jobs not run here: a unit's stored jobs (exact, once it is prepared) or others' jobs."""
        if unit is None:
            self.other += count
        else:
            self.prepared[unit] = count

    def unit_prepared(self, seconds: float | None, had_work: bool) -> None:
        """A unit was prepared (its data read, features loaded or extracted) in `seconds` (None: it failed)."""
        if had_work:
            self.units_left = max(0, self.units_left - 1)
            if seconds is not None:
                self.preparing.append(seconds)

    def dropped(self, kinds: dict[str, int]) -> None:
        """Jobs that will not run after all (their backbone could not be had): out of the time left."""
        for kind, count in kinds.items():
            self.kinds[kind] = max(0, self.kinds.get(kind, 0) - count)

    def finished(self, seconds: float, kind: str | None = None) -> str:
        self.ran, self.seconds = self.ran + 1, self.seconds + seconds
        if kind is not None:
            spent = self.timed.setdefault(kind, [0.0, 0])
            spent[0], spent[1] = spent[0] + seconds, spent[1] + 1
            self.kinds[kind] = max(0, self.kinds.get(kind, 0) - 1)
        left = max(0, self.total - self.done)
        eta = "" if not left else f", about {_duration(self._time_left(left))} left"
        return (f"study: {self.done} of {self.total} jobs done ({_duration(time.perf_counter() - self.start)} "
                f"this run{eta})")

    def _time_left(self, left: int) -> float:
        overall = self.seconds / self.ran
        counted = sum(self.kinds.values())
        # units still to prepare (reading data, loading or extracting features) at this run's mean so far
        preparing = self.units_left * sum(self.preparing) / len(self.preparing) if self.preparing else 0.0
        if not counted:
            return overall * left + preparing
        by_kind = sum(count * (self.timed[kind][0] / self.timed[kind][1] if kind in self.timed else overall)
                      for kind, count in self.kinds.items())
        return by_kind * left / counted + preparing  # jobs of other ranks or processes: out of this process's share


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"

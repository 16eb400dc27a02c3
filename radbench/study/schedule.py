"""Schedule: which unit and which job this process takes next. One process alone takes everything; processes
sharing an output folder split units and jobs through the store's claims (a unit another process prepares is
waited for after the others; a claimed job is left to its holder); under torchrun, a job on cached features goes to
one rank (job i to rank i mod world) and a job training a model runs on every rank together; an executor's worker
has one unit (its study's focus). The run loop asks for units and jobs and does not know which of these is active."""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from radbench.distributed import Ranks, training_together
from radbench.progress import Reporter
from radbench.results.plan_records import STALE_SECONDS
from radbench.study.plan import UnitPlan
from radbench.study.store import StudyStore


class Schedule:
    def __init__(self, store: StudyStore, ranks: Ranks, reporter: Reporter, progress):
        self.store, self.ranks, self.reporter, self.progress = store, ranks, reporter, progress
        self._said: set[str] = set()

    def units(self, units: list[UnitPlan]) -> Iterator[tuple[UnitPlan, bool]]:
        """Each unit once this process holds its claim, with whether the next unit has another backbone (the
        backbone's memory can then be released). The claim is held while the caller prepares the unit."""
        queue, busy_rounds = deque(units), 0
        while queue:
            unit = queue.popleft()
            if not self.store.claim(unit.key):  # another process is preparing it: do other units first, then wait
                queue.append(unit)
                busy_rounds += 1
                if busy_rounds >= len(queue):
                    self._say_waiting(unit.key)
                    time.sleep(1.0)
                continue
            busy_rounds = 0
            yield unit, not queue or queue[0].backbone is not unit.backbone

    @contextmanager
    def preparing(self, unit: UnitPlan):
        try:
            yield
        finally:
            self.store.release(unit.key)

    def jobs(self, jobs: list) -> Iterator[tuple[object, bool]]:
        """The pending jobs this process takes, with whether every rank trains it together."""
        for number, job in enumerate(jobs):
            together = self.ranks.world > 1 and not job.uses_features
            if not together and number % self.ranks.world != self.ranks.rank:
                self.progress.skipped(1)  # another rank's job
                continue
            yield job, together

    @contextmanager
    def claimed(self, job):
        """True while this process holds the job's claim (released however the job ends); False: another process
        holds it, and it is left to it."""
        key = job.claim_key or job.key
        if not self.store.claim(key):
            self.progress.skipped(1)
            self._say_left_to(key)
            yield False
            return
        try:
            yield True
        finally:
            self.store.release(key)

    def running(self, together: bool):
        """Where the job's training runs: every rank together, or this process alone."""
        return training_together(self.ranks if together else Ranks())

    def stores(self, together: bool) -> bool:
        """Whether this process stores the job's record (the same model on every rank: rank 0 stores it)."""
        return not together or self.ranks.main

    def _say_waiting(self, unit_key: str) -> None:
        """Once per unit: whose claim this run waits on, and when it stops waiting."""
        holder = self.store.claim_holder(unit_key)
        if holder is None or unit_key in self._said:
            return
        self._said.add(unit_key)
        self.reporter.info(f"waiting for {unit_key.removeprefix('unit:').replace('|', ' x ')}: another process "
                           f"prepares it ({holder}); taken over if its heartbeat stops for {STALE_SECONDS:.0f} s")

    def _say_left_to(self, job_key: str) -> None:
        """Once per other process: this run leaves the jobs it holds to it."""
        holder = self.store.claim_holder(job_key)
        process = holder.split(",")[0] if holder else None
        if process is None or process in self._said:
            return
        self._said.add(process)
        self.reporter.info(f"jobs claimed by another process ({holder}) are left to it; the next run takes over any "
                           f"whose heartbeat stopped for {STALE_SECONDS:.0f} s")

"""`timed(command)`: wall seconds and CPU seconds (user + system of the whole process tree) of one command."""

from __future__ import annotations

import resource
import subprocess
import time


def timed(command: list[str], env: dict | None = None, output=None) -> tuple[float, float]:
    """`output`: where the command's stdout and stderr go (a file, subprocess.DEVNULL); None: this terminal."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=output, stderr=None if output is None else subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

"""`busy_processes(k)`: k processes spinning on the CPU while a benchmark runs beside them (its `--load K`)."""

from __future__ import annotations

import contextlib
import multiprocessing


def _spin(stop) -> None:
    count = 0
    while not stop.is_set():
        count += 1


@contextlib.contextmanager
def busy_processes(count: int):
    stop = multiprocessing.Event()
    processes = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(count)]
    for process in processes:
        process.start()
    try:
        yield
    finally:
        stop.set()
        for process in processes:
            process.join()

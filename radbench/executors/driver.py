"""`radbench run --executor ray|slurm|submitit-local`: the driver plans the study's units, keeps at most
`max_parallel` of them in flight on the engine, retries a failed unit (an exception, a killed worker) up to
`retries` times without stopping the others, and merges the workers' shard files into OUT/results.sqlite after
each unit. Jobs are keyed by their configuration and a retried unit skips every job already in a shard or the
store, so whatever happens to workers each job is stored once, with what a serial run stores."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from radbench.config import StudyConfig
from radbench.errors import RadbenchError
from radbench.executors.backends import ExecutorOptions, make_backend
from radbench.executors.units import Unit, study_units
from radbench.progress import Reporter
from radbench.results import ResultsStore
from radbench.results.shards import merge_shards

DRIVER_CLAIM = "driver"  # one executor driver per output_dir


@dataclass
class DriverSummary:
    units: int = 0
    jobs_run: int = 0
    jobs_skipped: int = 0
    retried: list[str] = field(default_factory=list)  # "unit: error" of each failed attempt that was retried
    failed: dict[str, str] = field(default_factory=dict)  # unit -> last error, after every retry
    workers: set[str] = field(default_factory=set)
    merged: int = 0


def run_with_executor(study: StudyConfig, options: ExecutorOptions, reporter: Reporter,
                      units: list[Unit] | None = None) -> DriverSummary:
    output_dir = study.settings.output_dir
    store = ResultsStore(output_dir / "results.sqlite")
    if not store.claim(DRIVER_CLAIM):  # two drivers would each run every unit
        raise RadbenchError(f"{output_dir}: another executor driver is running on this output_dir "
                            f"({store.claim_holder(DRIVER_CLAIM)}); wait for it (`radbench status {output_dir}`) or "
                            "choose another --output-dir")
    with store.heartbeat():  # keeps the driver's claim alive; dropped when the driver ends
        return _drive(study, options, reporter, units, store)


def _drive(study: StudyConfig, options: ExecutorOptions, reporter: Reporter, units: list[Unit] | None,
           store: ResultsStore) -> DriverSummary:
    output_dir = study.settings.output_dir
    if units is None:
        units = study_units(study)
        store.plan_units(study.settings.name, list(dict.fromkeys((u.backbone, u.dataset) for u in units)))
        store.record_study_notes(study.settings.name, study.settings.references, study.settings.deviations,
                                 study.settings.cost_baseline)
    summary = DriverSummary(units=len(units), merged=merge_shards(output_dir))
    backend = make_backend(options, study)
    reporter.info(f"study {study.settings.name}: {len(units)} units on executor {options.name} "
                  f"(at most {options.max_parallel} at once, {options.retries} retries)")
    waiting, running, attempts = deque(units), {}, {u: 0 for u in units}
    try:
        with reporter.task("  units", len(units)) as advance:
            while waiting or running:
                while waiting and len(running) < options.max_parallel:
                    unit = waiting.popleft()
                    attempts[unit] += 1
                    running[backend.submit(unit)] = unit
                handle, result, error = backend.wait_any(list(running))
                unit = running.pop(handle)
                summary.merged += merge_shards(output_dir)
                if error is None:
                    store.clear_failure(unit.key)
                    summary.jobs_run += result["jobs_run"]
                    summary.jobs_skipped += result["jobs_skipped"]
                    summary.workers.add(result["worker"])
                    advance(1)
                elif attempts[unit] <= options.retries:
                    reporter.warn(f"unit {unit} failed (attempt {attempts[unit]}): {error}; submitting it again")
                    summary.retried.append(f"{unit}: {error}")
                    waiting.append(unit)
                else:
                    reporter.warn(f"unit {unit} failed {attempts[unit]} times; last error: {error}")
                    summary.failed[str(unit)] = error
                    store.record_failure(unit.key, unit.backbone, unit.dataset, unit.part, -1, 0, error)
                    advance(1)
    finally:
        backend.close()
        summary.merged += merge_shards(output_dir)
    return summary

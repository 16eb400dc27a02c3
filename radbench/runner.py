"""Runs a study, as one story: check everything checkable (study/checks.py), plan the units and their jobs
(study/plan.py), take units and jobs as the schedule deals them (study/schedule.py), prepare each unit's inputs
(study/prepare.py), run each job (study/execute.py) and store its record (study/store.py). Finished jobs are
skipped on a rerun; a failing job is recorded and the others run."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from radbench import arrayfile
from radbench.config import StudyConfig
from radbench.device import effective_precision
from radbench.distributed import Ranks
from radbench.errors import DownloadError, JobFailed
from radbench.feasibility import shrink_notes
from radbench.features.cache import FeatureCache
from radbench.features.provider import Extraction, FeatureProvider
from radbench.progress import Reporter, StudyProgress
from radbench.results import ResultsStore
from radbench.study.checks import check_before_work
from radbench.study.execute import run_job
from radbench.study.plan import plan_units, unit_jobs
from radbench.study.prepare import UnitContext
from radbench.study.schedule import Schedule
from radbench.study.store import StudyStore


@dataclass
class RunSummary:
    jobs_total: int = 0
    jobs_run: int = 0
    jobs_skipped: int = 0
    jobs_elsewhere: int = 0  # claimed and run by another process on the same output_dir
    failures: list[str] = field(default_factory=list)  # "backbone x dataset / protocol (seed s): error", one each
    used_feature_cache: bool = False  # any frozen-feature job planned (extracted now or read from the cache)
    extractions: list[Extraction] = field(default_factory=list)


def run_study(study: StudyConfig, reporter: Reporter | None = None, extract_only: bool = False,
              repair: bool = True, store: ResultsStore | None = None, fail_fast: bool = False) -> RunSummary:
    """Every (backbone, dataset) unit: claim it, prepare its images and features, release it; then claim and run
    its pending jobs one by one. A failing job is recorded and the others run (`summary.failures`); `fail_fast`
    stops at the first instead. An executor's worker passes a ShardWriter as `store` (results/shards.py): it then
    writes shard files, never the shared SQLite file."""
    settings = study.settings
    ranks = Ranks.from_env(settings.device)  # under torchrun: extraction shared, jobs dealt out, shards merged
    reporter = reporter or Reporter()
    reporter = reporter if ranks.main else Reporter(reporter.console, quiet=True)
    arrayfile.set_repair(repair)
    datasets = check_before_work(study, reporter, ranks, store_given=store is not None)
    store = StudyStore(study, ranks, store)
    store.record_groups(datasets)
    device = ranks.device
    precision = effective_precision(device, settings.precision)
    provider = FeatureProvider(cache=FeatureCache(study.feature_cache_dir, reporter.warn), device=device,
                               precision=precision, dtype=settings.cache_dtype, batch_size=settings.batch_size,
                               num_workers=settings.num_workers, reporter=reporter, ranks=ranks)
    reporter.info(f"study {settings.name}: device {device}, precision {precision}, output {settings.output_dir}")
    units = plan_units(study)
    store.plan_units([unit.names for unit in units])
    planned = {unit.key: unit_jobs(study, unit, datasets[unit.dataset_cfg.name], "") for unit in units}
    stored = store.stored_runs()  # stored jobs of units not prepared yet count as done in the time left
    unstored = {key: [job for job in jobs if job.run_identity not in stored] for key, jobs in planned.items()}
    progress = StudyProgress(sum(len(jobs) for jobs in planned.values()),
                             {key: len(planned[key]) - len(jobs) for key, jobs in unstored.items()},
                             Counter(job.entry.type for jobs in unstored.values() for job in jobs),
                             units=sum(bool(jobs) for jobs in unstored.values()))
    schedule = Schedule(store, ranks, reporter, progress)
    summary = RunSummary()
    lost_weights: dict[str, Exception] = {}  # backbones whose weights could not be downloaded: their later units too
    with store.heartbeat():
        for unit, last_of_backbone in schedule.units(units):
            context = UnitContext(study=study, unit=unit, raw=datasets[unit.dataset_cfg.name], provider=provider,
                                  precision=precision, device=device, reporter=reporter, ranks=ranks,
                                  datasets=datasets)
            unavailable = lost_weights.get(unit.backbone.display_name)
            started = time.perf_counter()
            has_work = bool(unstored[unit.key])
            try:
                with schedule.preparing(unit):  # the unit's claim is released however this ends
                    if unavailable is not None:
                        raise unavailable
                    pending = _prepare(context, store.finished_keys(), extract_only, summary)
            except DownloadError as error:  # weights out of reach: this backbone's units fail; the others run
                if fail_fast:
                    raise
                lost_weights[unit.backbone.display_name] = error
                _unit_failed(context, planned[unit.key], error, store=store, summary=summary)
                progress.skipped(len(planned[unit.key]), unit.key)
                progress.dropped(Counter(job.entry.type for job in unstored[unit.key]))
                progress.unit_prepared(None, has_work)
                continue
            store.plan_jobs(*unit.names, context.jobs)
            progress.skipped(len(context.jobs) - len(pending), unit.key)
            progress.unit_prepared(time.perf_counter() - started, has_work)
            if not extract_only and not _run_jobs(context, pending, schedule, store, summary=summary,
                                                  fail_fast=fail_fast):
                store.clear_unit_failures(*unit.names)  # every job of the unit stored: earlier failures are over
            if last_of_backbone:
                provider.release()
            ranks.barrier()  # the next unit's extraction needs every rank
    store.finish()
    if lost_weights and all(unit.backbone.display_name in lost_weights for unit in units):
        raise next(iter(lost_weights.values()))  # nothing could run at all: the error itself, as one line
    summary.extractions = provider.extractions
    return summary


def _prepare(context: UnitContext, finished: set[str], extract_only: bool, summary: RunSummary) -> list:
    """The unit's pending jobs, with the cached features they read (every job's, when extracting only)."""
    jobs = context.prepare()
    for note in shrink_notes(context.study, context.unit.backbone, context.dataset) if context.ranks.main else ():
        context.reporter.note(note)
    pending = [job for job in jobs if job.key not in finished or not finished.issuperset(job.evaluation_keys)]
    for job in pending:  # stored before its study asked for these extra test sets: rerun for their rows only
        job.claim_key = job.key if job.key not in finished else \
            next(key for key in job.evaluation_keys if key not in finished)
    summary.jobs_total += len(jobs)
    summary.jobs_skipped += len(jobs) - len(pending)
    context.reporter.info(f"{context.unit.backbone.display_name} x {context.dataset.name}: {len(pending)} of "
                          f"{len(jobs)} jobs to run")
    summary.used_feature_cache |= any(job.uses_features for job in jobs)
    context.extract(jobs if extract_only else pending)
    return pending


def _run_jobs(context: UnitContext, pending: list, schedule: Schedule, store: StudyStore, *, summary: RunSummary,
              fail_fast: bool) -> int:
    """Run the jobs the schedule gives this process; the number that failed."""
    failed, computed = 0, {}  # seed-free protocols' results, by shared key (study/execute.py)
    for job, together in schedule.jobs(pending):
        with schedule.claimed(job) as mine:
            if not mine:
                summary.jobs_elsewhere += 1
                continue
            started = time.perf_counter()
            try:
                with schedule.running(together):
                    record = run_job(context.study, job, context.inputs(job), context.reporter, computed)
            except Exception as error:  # recorded (status and report show it); the other jobs go on
                failed += 1
                _failed(context, job, error, store=store, summary=summary,
                        stop=fail_fast or context.ranks.world > 1)
                context.reporter.info(schedule.progress.finished(time.perf_counter() - started, job.entry.type))
                continue
        if schedule.stores(together):  # the same model on every rank: rank 0 stores it
            summary.jobs_run += store.save(record)
            context.reporter.info(schedule.progress.finished(time.perf_counter() - started, job.entry.type))
    return failed


def _unit_failed(context: UnitContext, jobs: list, error: Exception, *, store: StudyStore,
                 summary: RunSummary) -> None:
    """A backbone whose weights cannot be had (hub unreachable): each of the unit's unstored jobs is
    recorded as failed with the one line, said once, and the run goes on with the other backbones."""
    line = f"{type(error).__name__}: {error}".splitlines()[0][:500]
    stored = store.stored_runs()  # by name: without the data read, a job's key is not known
    unstored = [job for job in jobs if job.run_identity not in stored]
    store.plan_jobs(*context.unit.names, unstored)  # `status` counts them failed; a later run replaces the plan
    for job in unstored:
        store.record_failure(context.unit, job, line)
    backbone, dataset = context.unit.names
    summary.failures.append(f"{backbone} x {dataset} (every job): {line}")
    context.reporter.warn(f"{backbone} x {dataset}: backbone unavailable, its jobs recorded as failed; the run goes "
                          f"on with the other backbones: {error}")


def _failed(context: UnitContext, job, error: Exception, *, store: StudyStore, summary: RunSummary,
            stop: bool) -> None:
    """Record the failure; stop the run (`--fail-fast`, or ranks training together, which must not part ways) or
    say it and go on."""
    line = f"{type(error).__name__}: {error}".splitlines()[0][:500]
    store.record_failure(context.unit, job, line)
    backbone, dataset = context.unit.names
    where = f"{backbone} x {dataset} / {job.label} (seed {job.seed})"
    if stop:
        raise JobFailed(f"{where} failed (recorded; the run stopped here): {line}") from error
    summary.failures.append(f"{where}: {line}")
    context.reporter.warn(f"{where} failed, recorded; the run goes on: {line}")

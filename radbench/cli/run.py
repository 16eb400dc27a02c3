"""`radbench run`, `plan` and `extract`: a study's jobs, locally or on an executor."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from radbench.cli.common import (
    BACKBONE,
    BATCH_SIZE,
    DATA_ROOT,
    DEVICE,
    EPOCHS,
    FIT_WORKERS,
    IMAGE_SIZE,
    LIMIT,
    NO_REPAIR,
    NUM_WORKERS,
    OUTPUT_DIR,
    QUIET,
    SEEDS,
    TRACK,
    TRACK_OPTIONAL,
    WEIGHTS,
    _load,
    _open_store,
    _print_summary,
    _run,
    _with_overrides,
    app,
    err,
    out,
    user_errors,
)
from radbench.errors import RadbenchError


@app.command()
@user_errors
def run(
    study: Path = typer.Argument(..., help="study YAML"),
    device: Optional[str] = DEVICE, batch_size: Optional[int] = BATCH_SIZE, num_workers: Optional[int] = NUM_WORKERS,
    fit_workers: Optional[int] = FIT_WORKERS, quiet: bool = QUIET, no_repair: bool = NO_REPAIR,
    data_root: Optional[Path] = DATA_ROOT, output_dir: Optional[Path] = OUTPUT_DIR, limit: Optional[int] = LIMIT,
    backbone: Optional[list[str]] = BACKBONE, weights: Optional[str] = WEIGHTS, image_size: Optional[int] = IMAGE_SIZE,
    seeds: Optional[str] = SEEDS, epochs: Optional[int] = EPOCHS,
    executor: str = typer.Option("local", help="local (this process), ray, slurm (submitit) or submitit-local"),
    max_parallel: int = typer.Option(4, "--max-parallel", min=1, help="executors: units in flight at once"),
    retries: int = typer.Option(2, min=0, help="executors: submit a failed unit again up to N times"),
    gpus_per_job: int = typer.Option(0, "--gpus-per-job", min=0, help="executors: GPUs per unit"),
    cpus_per_job: int = typer.Option(1, "--cpus-per-job", min=1, help="executors: CPUs per unit"),
    partition: Optional[str] = typer.Option(None, help="slurm partition"),
    slurm_arg: Optional[list[str]] = typer.Option(None, "--slurm-arg", help="KEY=VALUE passed to sbatch (repeatable)"),
    address: Optional[str] = typer.Option(None, help="ray: cluster address (auto, ray://...); default a local one"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run only the units with failed jobs"),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="stop at the first failing job (default: record it, "
                                   "run every other job, exit non-zero with a summary)"),
    track: Optional[str] = TRACK,
    track_optional: bool = TRACK_OPTIONAL,
):
    """Run every backbone x dataset x protocol x seed of a study; finished jobs are skipped."""
    import os

    from radbench.executors.backends import ExecutorOptions

    options = ExecutorOptions(executor, max_parallel, retries, gpus_per_job, cpus_per_job, partition,
                              slurm_args=_key_values(slurm_arg or []), address=address)
    loaded = _load(study, data_root, output_dir, limit, backbone, weights, image_size, seeds, epochs)
    config = _with_overrides(loaded, device, batch_size, num_workers, fit_workers)
    tracker = _tracker(track, track_optional, config.settings.output_dir, config.settings.name)
    rank = int(os.environ.get("RANK", "0"))
    quiet = quiet or rank > 0  # under torchrun: rank 0 reports for all
    units = _failed_units(config) if retry_failed else None
    failures: list[str] = []
    if units == []:
        err.print("no failed jobs to retry")
    elif executor == "local" and units is None:
        failures = _run(config, quiet, repair=not no_repair, fail_fast=fail_fast).failures
    else:
        failures = _run_units(config, options, units, quiet, fail_fast)
    if rank != 0:
        return
    _print_summary(config.settings.output_dir)
    tracking_failed = None
    if tracker is not None:
        from radbench.results.tracking import TrackingFailed, after_the_run

        try:
            logged = after_the_run(lambda: tracker.sync(_open_store(config.settings.output_dir)), "logging the jobs",
                                   config.settings.output_dir, track_optional, _warn)
        except TrackingFailed as error:  # said after the job failures, which it must not hide either
            tracking_failed, logged = error, None
        if logged is not None:
            err.print(f"tracking: {logged} job(s) logged to MLflow at {tracker.uri} (experiment "
                      f"{config.settings.name!r})", highlight=False)
    out_dir = config.settings.output_dir
    if failures:
        err.print(f"[bold red]{len(failures)} job(s) failed[/] (recorded; `radbench run` again retries them):",
                  highlight=False)
        for line in failures:
            err.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if tracking_failed is not None:
        raise tracking_failed
    if failures:
        raise typer.Exit(1)
    err.print(f"next: radbench report {out_dir}   (the page: {out_dir / 'report' / 'index.html'})", highlight=False)


def _tracker(track: str | None, optional: bool, output_dir: Path, study: str):
    from radbench.results.tracking import tracker_for

    return tracker_for(track, optional, output_dir, study, _warn)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _key_values(items: list[str]) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in items]
    bad = [item for item, pair in zip(items, pairs) if len(pair) != 2 or not pair[0]]
    if bad:
        raise RadbenchError(f"--slurm-arg {bad[0]!r}: write KEY=VALUE, e.g. --slurm-arg account=lab")
    return dict(pairs)


def _failed_units(config):
    from radbench.executors.units import Unit

    output_dir = config.settings.output_dir
    if not (output_dir / "results.sqlite").is_file() and not (output_dir / "shards").is_dir():
        return []
    status = _open_store(config.settings.output_dir).status()
    failed = status[status.failed > 0]
    return list(dict.fromkeys(Unit(b, d) for b, d in zip(failed.backbone, failed.dataset)))


def _run_units(config, options, units, quiet: bool, fail_fast: bool) -> list[str]:
    from radbench.executors.driver import run_with_executor
    from radbench.executors.units import unit_study
    from radbench.progress import Reporter

    reporter = Reporter(err, quiet=quiet)
    if options.name == "local":  # --retry-failed here: the failed units, one after another
        return [line for unit in units for line in _run(unit_study(config, unit), quiet, fail_fast=fail_fast).failures]
    done = run_with_executor(config, options, reporter, units)
    err.print(f"units: {done.units} on {len(done.workers)} worker(s); jobs: {done.jobs_run} run, "
              f"{done.jobs_skipped} already done; {len(done.retried)} retried attempt(s)")
    if done.failed:
        raise RadbenchError(f"{len(done.failed)} unit(s) failed after {options.retries} retries (see `radbench "
                            f"status {config.settings.output_dir}`): " + "; ".join(f"{u}: {e}" for u, e in
                                                                                 done.failed.items()))
    return []


@app.command()
@user_errors
def plan(
    study: Path = typer.Argument(..., help="study YAML"),
    data_root: Optional[Path] = DATA_ROOT, output_dir: Optional[Path] = OUTPUT_DIR, limit: Optional[int] = LIMIT,
    backbone: Optional[list[str]] = BACKBONE, weights: Optional[str] = WEIGHTS, image_size: Optional[int] = IMAGE_SIZE,
    seeds: Optional[str] = SEEDS, epochs: Optional[int] = EPOCHS,
):
    """What a study will do, without building a model: the job matrix, images to extract, what the caches and
    the store already hold, a time estimate from recorded throughput; every dataset's layout is read and checked."""
    config = _load(study, data_root, output_dir, limit, backbone, weights, image_size, seeds, epochs)
    from radbench.extras import check_study

    check_study(config)  # a missing pip extra, before the data is read
    from radbench.backbones.text import check_text_towers

    check_text_towers(config)  # zero-shot on a backbone without a text tower: from the config, before torch
    from radbench.plan import plan_study  # torch comes in here: a typo in the YAML is reported before it
    from radbench.progress import Reporter

    reporter = Reporter(err, quiet=True)
    described: list[str] = []
    units = plan_study(config, reporter, described)
    for line in described:
        out.print(line, highlight=False, soft_wrap=True)
    table = Table(title=f"plan of {config.settings.name}: {len(config.backbones)} backbones x {len(config.datasets)} "
                        f"datasets x {len(config.protocols)} protocols x {len(config.settings.seeds)} seeds")
    for column in ("backbone", "dataset", "images", "jobs", "done", "features", "extraction"):
        table.add_column(column, justify="left" if column in ("backbone", "dataset") else "right")
    for unit in units:
        if unit.unchecked:
            table.add_row(unit.backbone, unit.dataset, str(unit.images), "?", "?", "not checked", "-")
            continue
        features = "-" if not unit.feature_jobs else "cached" if unit.features_cached else "to extract"
        estimate = "-" if not unit.feature_jobs or unit.features_cached else \
            "unknown" if unit.estimate_seconds is None else \
            "<1 s" if unit.estimate_seconds < 1 else f"~{unit.estimate_seconds:.0f} s"
        if unit.gflops and unit.feature_jobs and not unit.features_cached:  # never extracted: from its size
            estimate += f" (size: {unit.gflops:.3g} GFLOP/img)"
        table.add_row(unit.backbone, unit.dataset, str(unit.images), str(unit.jobs), str(unit.done), features,
                      estimate)
    out.print(table)
    total, done = sum(u.jobs for u in units), sum(u.done for u in units)
    extract = sum(u.images for u in units if u.feature_jobs and not u.features_cached)
    out.print(f"jobs: {total} ({done} already stored, {total - done} to run); images to extract: {extract}; "
              f"units: {len(units)}; output: {config.settings.output_dir}")
    shared = sum(u.shared for u in units)
    if shared:
        out.print(f"{shared} of these jobs are seed-free protocols (kNN, logistic regression, zero-shot) for a further seed: "
                  "computed once per backbone x dataset and stored under every seed")


@app.command()
@user_errors
def extract(
    study: Path = typer.Argument(..., help="study YAML"),
    device: Optional[str] = DEVICE, batch_size: Optional[int] = BATCH_SIZE, num_workers: Optional[int] = NUM_WORKERS,
    quiet: bool = QUIET, no_repair: bool = NO_REPAIR,
    data_root: Optional[Path] = DATA_ROOT, output_dir: Optional[Path] = OUTPUT_DIR, limit: Optional[int] = LIMIT,
    backbone: Optional[list[str]] = BACKBONE, weights: Optional[str] = WEIGHTS, image_size: Optional[int] = IMAGE_SIZE,
):
    """Extract and cache features for every backbone x dataset of a study, without running protocols (the same
    data and shrink options as run: a later run finds the cache)."""
    loaded = _load(study, data_root, output_dir, limit, backbone, weights, image_size, None, None)
    _run(_with_overrides(loaded, device, batch_size, num_workers), quiet, extract_only=True, repair=not no_repair)

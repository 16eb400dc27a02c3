"""The `radbench` command line."""

from __future__ import annotations

import dataclasses
import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from radbench.errors import DownloadError, RadbenchError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Benchmark vision foundation models on radiology.")
err = Console(stderr=True)
# piped output: do not squeeze tables to 80 columns, unless COLUMNS says how wide
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in __import__("os").environ else 160)


def _version(value: bool) -> None:
    if value:
        import platform

        from radbench import __version__

        typer.echo(f"radbench {__version__} (Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print radbench's version and exit")) -> None:
    """Benchmark vision foundation models on radiology."""


class Split(str, Enum):
    test = "test"
    val = "val"


def user_errors(command):
    """Input errors print one clear line each and exit 2; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RadbenchError as error:
            for line in str(error).splitlines():
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished jobs are saved, rerun to resume")
            raise typer.Exit(130) from None

    return wrapper


def _with_overrides(study, device: Optional[str], batch_size: Optional[int], num_workers: Optional[int]):
    updates = {k: v for k, v in (("device", device), ("batch_size", batch_size), ("num_workers", num_workers))
               if v is not None}
    if not updates:
        return study
    settings = study.settings.model_validate({**study.settings.model_dump(), **updates})
    return dataclasses.replace(study, settings=settings)


def _run(study, quiet: bool, extract_only: bool = False, repair: bool = True, fail_fast: bool = False):
    from radbench.progress import Reporter
    from radbench.runner import run_study

    summary = run_study(study, Reporter(err, quiet=quiet), extract_only=extract_only, repair=repair,
                        fail_fast=fail_fast)
    images = sum(e.images for e in summary.extractions)
    extracted = (f"; extracted features for {images} images ({len(summary.extractions)} splits)"
                 if summary.used_feature_cache else "")
    elsewhere = f", {summary.jobs_elsewhere} run by another process" if summary.jobs_elsewhere else ""
    err.print(f"jobs: {summary.jobs_run} run, {summary.jobs_skipped} already done{elsewhere}{extracted}")
    return summary


DATA_ROOT = typer.Option(None, "--data-root", help="sets RADBENCH_DATA, the data root of the shipped studies")
OUTPUT_DIR = typer.Option(None, "--output-dir", help="instead of the study's output_dir")
LIMIT = typer.Option(None, "--limit", min=1, help="shrink: at most N images per dataset")
BACKBONE = typer.Option(None, "--backbone", help="shrink: instead of the study's backbones (repeatable)")
WEIGHTS = typer.Option(None, "--weights", help="weights of the --backbone models: hub, none or a checkpoint path")
IMAGE_SIZE = typer.Option(None, "--image-size", min=8, help="shrink: every image size of the study")
SEEDS = typer.Option(None, "--seeds", help="instead of the study's seeds, e.g. 0,1")
EPOCHS = typer.Option(None, "--epochs", min=1, help="shrink: at most N epochs for every training protocol")


def _load(study: Path, data_root, output_dir, limit, backbone, weights, image_size, seeds, epochs):
    import os

    from radbench.config import load_study
    from radbench.overrides import Overrides

    if data_root is not None:
        os.environ["RADBENCH_DATA"] = str(Path(data_root).resolve())
    try:
        seed_list = tuple(int(s) for s in seeds.split(",")) if seeds else ()
    except ValueError:
        raise RadbenchError(f"--seeds {seeds!r}: give integers separated by commas, e.g. 0,1,2") from None
    overrides = Overrides(str(Path(output_dir).resolve()) if output_dir else None, limit, tuple(backbone or ()),
                          weights, image_size, seed_list, epochs)
    return load_study(study, overrides)


@app.command()
@user_errors
def run(
    study: Path = typer.Argument(..., help="study YAML"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps"),
    batch_size: Optional[int] = typer.Option(None, help="extraction batch size"),
    num_workers: Optional[int] = typer.Option(None, help="data loading workers"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    no_repair: bool = typer.Option(False, "--no-repair", help="stop on a damaged cache file instead of rebuilding it"),
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
):
    """Run every backbone x dataset x protocol x seed of a study; finished jobs are skipped."""
    import os

    from radbench.executors.backends import ExecutorOptions

    loaded = _load(study, data_root, output_dir, limit, backbone, weights, image_size, seeds, epochs)
    config = _with_overrides(loaded, device, batch_size, num_workers)
    options = ExecutorOptions(executor, max_parallel, retries, gpus_per_job, cpus_per_job, partition,
                              slurm_args=_key_values(slurm_arg or []), address=address)
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
    out_dir = config.settings.output_dir
    if failures:
        err.print(f"[bold red]{len(failures)} job(s) failed[/] (recorded; `radbench run` again retries them):",
                  highlight=False)
        for line in failures:
            err.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"next: radbench report {out_dir}   (the page: {out_dir / 'report' / 'index.html'})", highlight=False)


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
    from radbench.plan import plan_study  # torch comes in here: a typo in the YAML is reported before it
    from radbench.progress import Reporter

    reporter = Reporter(err, quiet=True)
    units = plan_study(config, reporter)
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
            "unknown" if unit.estimate_seconds is None else f"~{unit.estimate_seconds:.0f} s"
        table.add_row(unit.backbone, unit.dataset, str(unit.images), str(unit.jobs), str(unit.done), features,
                      estimate)
    out.print(table)
    total, done = sum(u.jobs for u in units), sum(u.done for u in units)
    extract = sum(u.images for u in units if u.feature_jobs and not u.features_cached)
    out.print(f"jobs: {total} ({done} already stored, {total - done} to run); images to extract: {extract}; "
              f"units: {len(units)}; output: {config.settings.output_dir}")


@app.command()
@user_errors
def extract(
    study: Path = typer.Argument(..., help="study YAML"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps"),
    batch_size: Optional[int] = typer.Option(None, help="extraction batch size"),
    num_workers: Optional[int] = typer.Option(None, help="data loading workers"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    no_repair: bool = typer.Option(False, "--no-repair", help="stop on a damaged cache file instead of rebuilding it"),
):
    """Extract and cache features for every backbone x dataset of a study, without running protocols."""
    from radbench.config import load_study

    _run(_with_overrides(load_study(study), device, batch_size, num_workers), quiet, extract_only=True,
         repair=not no_repair)


@app.command()
@user_errors
def results(
    output_dir: Path = typer.Argument(..., help="a study's output_dir"),
    csv: bool = typer.Option(False, "--csv", help="one CSV row per test metric"),
    predictions: bool = typer.Option(False, "--predictions", help="per-sample test scores as CSV"),
    samples: bool = typer.Option(False, "--samples", help="per-case segmentation metrics as CSV"),
    split: Split = typer.Option(Split.test, help="test (final) or val (of the chosen hyperparameters)"),
    backbone: Optional[str] = typer.Option(None, help="CSV output: only this backbone"),
    dataset: Optional[str] = typer.Option(None, help="CSV output: only this dataset"),
    protocol: Optional[str] = typer.Option(None, help="CSV output: only this protocol"),
    wide: bool = typer.Option(False, "--wide", help="every metric column (default: the headline ones)"),
):
    """Show the results stored in OUTPUT_DIR."""
    from radbench.results import metric_rows
    from radbench.results import predictions as prediction_rows

    split = split.value
    store = _open_store(output_dir)
    if samples:
        rows = store.sample_metrics()
        for column, value in (("backbone", backbone), ("dataset", dataset), ("protocol", protocol)):
            if value is not None:
                rows = rows[rows[column] == value]
        rows.to_csv(sys.stdout, index=False)
    elif predictions:
        prediction_rows(store, backbone, dataset, protocol).to_csv(sys.stdout, index=False)
    elif csv:
        rows = metric_rows(store, split)
        for column, value in (("backbone", backbone), ("dataset", dataset), ("protocol", protocol)):
            if value is not None:
                rows = rows[rows[column] == value]
        rows.to_csv(sys.stdout, index=False)
    else:
        _print_summary(output_dir, split, wide)


@app.command()
@user_errors
def status(output_dir: Path = typer.Argument(..., help="a study's output_dir")):
    """Where a study stands: per backbone x dataset x protocol the jobs stored, running (on which host:pid),
    failed (the error's first line) and pending. Failed and pending jobs run on the next `radbench run`."""
    rows = _open_store(output_dir).status()
    table = Table(title=f"status of {output_dir}")
    for column in ("backbone", "dataset", "protocol", "stored", "running", "failed", "pending", "last error"):
        table.add_column(column, justify="right" if column in ("stored", "running", "failed", "pending") else "left",
                         overflow="fold")
    for row in rows.itertuples():
        if row.planned == 0 and not row.failed:
            table.add_row(row.backbone, row.dataset, "-", "not reached", "", "", "", "")
            continue
        running = f"{row.running} ({row.held_by})" if row.running else "0"
        if row.stale:
            running += f"; {row.stale} stale claim(s): {row.stale_claims}"
        table.add_row(row.backbone, row.dataset, row.protocol, f"{row.done} of {row.planned}", running,
                      str(row.failed), str(row.pending), row.error if isinstance(row.error, str) else "")
    out.print(table)
    out.print(f"jobs: {int(rows.done.sum())} stored, {int(rows.running.sum())} running, {int(rows.failed.sum())} "
              f"failed, {int(rows.pending.sum())} pending of "
              f"{int(rows.planned.sum())} planned; units not reached: {int((rows.planned == 0).sum())}")
    if rows.stale.sum():
        out.print(f"{int(rows.stale.sum())} pending job(s) hold a stale claim (no heartbeat, or its process is gone): "
                  "the next `radbench run` takes them over")


def _open_store(output_dir: Path):
    from radbench.results import ResultsStore
    from radbench.results.shards import merge_shards

    path = output_dir / "results.sqlite"
    if not path.is_file() and not (output_dir / "shards").is_dir():
        raise RadbenchError(f"{output_dir}: no results.sqlite here (is this a study's output_dir?)")
    merge_shards(output_dir)  # results of executor workers not merged yet
    return ResultsStore(path)


def _print_summary(output_dir: Path, split: str = "test", wide: bool = False) -> None:
    from radbench.results import summary
    from radbench.results.console import summary_tables

    for table in summary_tables(summary(_open_store(output_dir), split), split, output_dir, wide):
        out.print(table)
    out.print(f"results: {output_dir / 'results.sqlite'}  (radbench results {output_dir} --wide | --csv | "
              "--predictions)")


@app.command()
@user_errors
def report(
    output_dir: Path = typer.Argument(..., help="a study's output_dir"),
    out: Optional[Path] = typer.Option(None, help="where the report goes (default OUTPUT_DIR/report)"),
    resamples: int = typer.Option(1000, min=100, help="patient-level bootstrap resamples"),
    seed: int = typer.Option(0, help="seed of the resamples"),
    patch_images: int = typer.Option(3, min=0, help="test images per dataset in the PCA patch-feature maps (0: none; "
                                     "the only part that runs a backbone)"),
):
    """The study's answer: index.html (findings, status, leaderboards with 95 % patient-level bootstrap intervals
    and significance, ranking, curves, ROC / confusion / per-class AUROC, segmentation cases and overlays, cost,
    CKA and PCA patch maps), every figure as PNG + SVG and every table as CSV / Markdown / LaTeX."""
    from radbench.report.build import build_report
    from radbench.report.publish import check_resamples, publish

    target = out or output_dir / "report"
    check_resamples(resamples, _open_store(output_dir).largest_test_split())
    _, board = publish(target, lambda folder: build_report(output_dir, folder, resamples, seed, patch_images,
                                                            warn=lambda m: err.print(f"warning: {escape(m)}"),
                                                            say=lambda m: err.print(escape(m), highlight=False)))
    page = target / "index.html"
    err.print(f"report: {page} ({len(board)} leaderboard rows, {resamples} patient resamples; tables in "
              f"{target / 'tables'}, figures in {target / 'figures'})")


class ListWhat(str, Enum):
    backbones = "backbones"
    datasets = "datasets"
    protocols = "protocols"


@app.command("list")
@user_errors
def list_(what: ListWhat = typer.Argument(..., help="backbones, datasets or protocols")):
    """List what a study can name."""
    table = Table()
    if what is ListWhat.backbones:
        from radbench.backbones import BACKBONES

        for column in ("name", "family", "source", "params", "native", "patch", "norm", "features", "licence",
                       "description"):
            table.add_column(column, justify="right" if column in ("params", "native", "patch") else "left",
                             overflow="fold")
        for name, entry in BACKBONES.items():
            table.add_row(name, entry.family, entry.model_id, f"{entry.params_m:g}M" if entry.params_m else "",
                          str(entry.native or ""), str(entry.patch or "-"), entry.normalisation, entry.feature_types,
                          entry.licence, entry.description)
        table.add_row("timm:<model>", "timm", "any timm model", "", "", "", "from its config", "by model", "",
                      "e.g. timm:convnext_small.fb_in22k")
        table.add_row("hf:<org/repo>", "hf", "a transformers vision model", "", "", "", "its image processor",
                      "cls, mean, lastN (pool without CLS)", "the repo's",
                      "e.g. hf:microsoft/rad-dino, hf:facebook/vit-msn-base, hf:google/medsiglip-448; or weights: a "
                      "save_pretrained folder")
        table.add_row("open_clip:<model>/<tag>", "open_clip", "an open_clip image tower", "", "", "",
                      "its preprocess config", "cls, mean, lastN", "the tag's",
                      "e.g. open_clip:ViT-B-16/laion2b_s34b_b88k, open_clip:hf-hub:<repo>")
        table.add_row("xrv:<weights>", "xrv", "a torchxrayvision model", "", "", "-", "xrv [-1024, 1024]", "pool",
                      "apache-2.0", "e.g. xrv:densenet121-res224-chex")
    elif what is ListWhat.datasets:
        from radbench.data import ADAPTERS

        table.add_column("adapter")
        table.add_column("description")
        table.add_column("keys")
        for name, adapter in ADAPTERS.items():
            table.add_row(name, adapter.description, ", ".join(adapter.config.model_fields))
    else:
        from radbench.protocols import PROTOCOLS

        table.add_column("protocol")
        table.add_column("description")
        table.add_column("defaults")
        for name, spec in PROTOCOLS.items():
            defaults = spec.config().model_dump(exclude={"name", "features", "last_blocks", "selection_metric"})
            table.add_row(name, spec.description, ", ".join(f"{k}={_short(v)}" for k, v in defaults.items()))
    out.print(table)


def _short(value) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]:g} .. {value[-1]:g}] ({len(value)} values)"
    return str(value)


@app.command()
@user_errors
def quickstart(
    offline: bool = typer.Option(False, "--offline", help="random-init weights, no downloads (numbers meaningless)"),
    data: Optional[Path] = typer.Option(None, help="local PneumoniaMNIST npz instead of downloading"),
    output_dir: Path = typer.Option(Path("runs/quickstart"), help="where results and features go"),
    backbone: str = typer.Option("dinov2_vits14", help="backbone registry name or timm:<model>"),
    limit: int = typer.Option(200, help="samples per split"),
    image_size: int = typer.Option(224, help="input size of the backbone"),
    batch_size: int = typer.Option(64, help="extraction batch size"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
):
    """A real small study end to end: PneumoniaMNIST, DINOv2 ViT-S/14, kNN + linear + logistic regression."""
    from radbench.quickstart import quickstart_study

    if offline:
        err.print(Panel(
            "[bold]OFFLINE: the backbone has RANDOM weights.[/] The numbers below measure a random network, "
            "not DINOv2; they are meaningless as a benchmark. Run without --offline (network needed) for real "
            "pretrained weights.", title="radbench quickstart --offline", border_style="red"))
    study = quickstart_study(output_dir, data, offline, backbone, limit, image_size, batch_size)
    err.print(f"quickstart: up to {3 * limit} PneumoniaMNIST images through {backbone} at {image_size} px, then kNN, "
              "linear probe and logistic regression (about 1.5 CPU-minutes with the defaults)", highlight=False)
    try:
        _run(study, quiet)
    except DownloadError as error:
        raise RadbenchError(f"{error}\nwithout network: radbench quickstart --offline --data PATH/TO/pneumoniamnist.npz "
                            "(random weights, numbers meaningless)") from None
    _print_summary(study.settings.output_dir)
    if offline:
        err.print("[bold red]reminder: random weights (--offline); these numbers are not a benchmark.[/]")
    err.print(f"next: radbench report {study.settings.output_dir}   (one HTML page with intervals and figures)",
              highlight=False)


if __name__ == "__main__":
    app()


from radbench import cli_pretrain  # noqa: E402,F401  (registers `radbench pretrain` on app)

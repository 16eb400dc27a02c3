"""What every command shares: the app, its consoles, one-line user errors, the study loader with the CLI's
overrides, the local run and the results summary."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from radbench.errors import RadbenchError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Benchmark vision foundation models on radiology.")
err = Console(stderr=True)
# piped output: do not squeeze tables to 80 columns, unless COLUMNS says how wide
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)


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
            with one_line_warnings():
                return command(*args, **kwargs)
        except RadbenchError as error:
            for line in str(error).splitlines():
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; finished jobs are saved, rerun to resume")
            raise typer.Exit(130) from None

    return wrapper


@contextlib.contextmanager
def one_line_warnings():
    """Python warnings as one `warning:` line each (radbench's own as they are; a library's with where it came
    from), not `file:line: Category: text` with the source line under it."""
    import warnings

    package = str(Path(__file__).resolve().parents[1])
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if not str(filename).startswith(package):
            text += f" ({category.__name__} from {Path(filename).parent.name}/{Path(filename).name})"
        if text not in seen:
            seen.add(text)
            err.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _with_overrides(study, device: Optional[str], batch_size: Optional[int], num_workers: Optional[int],
                    fit_workers: Optional[int] = None):
    updates = {k: v for k, v in (("device", device), ("batch_size", batch_size), ("num_workers", num_workers),
                                 ("fit_workers", fit_workers)) if v is not None}
    if not updates:
        return study
    settings = study.settings.model_validate({**study.settings.model_dump(), **updates})
    return dataclasses.replace(study, settings=settings)


def _run(study, quiet: bool, extract_only: bool = False, repair: bool = True, fail_fast: bool = False):
    from radbench.progress import Reporter

    reporter = Reporter(err, quiet=quiet)
    settings = study.settings
    # said before torch and the data readers load (seconds): the run has started, and on what
    reporter.info(f"study {settings.name}: {len(study.backbones)} backbone(s) x {len(study.datasets)} dataset(s) x "
                  f"{len(study.protocols)} protocol(s) x {len(settings.seeds)} seed(s); reading the data")
    from radbench.runner import run_study

    summary = run_study(study, reporter, extract_only=extract_only, repair=repair, fail_fast=fail_fast)
    images = sum(e.images for e in summary.extractions)
    extracted = (f"; extracted features for {images} images ({len(summary.extractions)} splits)"
                 if summary.used_feature_cache else "")
    elsewhere = f", {summary.jobs_elsewhere} run by another process" if summary.jobs_elsewhere else ""
    err.print(f"jobs: {summary.jobs_run} run, {summary.jobs_skipped} already done{elsewhere}{extracted}")
    return summary


DEVICE = typer.Option(None, help="auto, cpu, cuda, cuda:N, mps")
BATCH_SIZE = typer.Option(None, help="extraction batch size")
NUM_WORKERS = typer.Option(None, help="data loading workers")
FIT_WORKERS = typer.Option(None, "--fit-workers", min=1, help="logistic regression on large features: grid fits "
                           "side by side, one maths thread each (default: the cores given)")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress output")
NO_REPAIR = typer.Option(False, "--no-repair", help="stop on a damaged cache file instead of rebuilding it")
DATA_ROOT = typer.Option(None, "--data-root", help="sets RADBENCH_DATA, the data root of the shipped studies")
OUTPUT_DIR = typer.Option(None, "--output-dir", help="instead of the study's output_dir")
LIMIT = typer.Option(None, "--limit", min=1, help="shrink: at most N images per dataset")
BACKBONE = typer.Option(None, "--backbone", help="shrink: instead of the study's backbones (repeatable)")
WEIGHTS = typer.Option(None, "--weights", help="weights of the --backbone models: hub, none or a checkpoint path")
IMAGE_SIZE = typer.Option(None, "--image-size", min=8, help="shrink: every image size of the study")
SEEDS = typer.Option(None, "--seeds", help="instead of the study's seeds, e.g. 0,1")
EPOCHS = typer.Option(None, "--epochs", min=1, help="shrink: at most N epochs for every training protocol")
TRACK = typer.Option(None, "--track", help="log to MLflow: mlflow (a local store in OUT/mlruns) or mlflow:URI "
                     "(e.g. mlflow:http://localhost:5000); needs radbench\\[mlflow]")
TRACK_OPTIONAL = typer.Option(False, "--track-optional", help="an unreachable --track server is a warning, not an "
                              "error: run without tracking")


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
    config = load_study(study, overrides)
    for note in dict.fromkeys(overrides.notes):  # what the shrink line changed of the study (a paper's settings)
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    return config


def _open_store(output_dir: Path):
    from radbench.results.shards import open_results

    return open_results(output_dir)


def _print_summary(output_dir: Path, split: str = "test", wide: bool = False) -> None:
    from radbench.results import summary
    from radbench.results.console import summary_tables

    for table in summary_tables(summary(_open_store(output_dir), split), split, output_dir, wide):
        out.print(table)
    out.print(f"results: {output_dir / 'results.sqlite'}  (radbench results {output_dir} --wide | --csv | "
              "--predictions)")

"""`radbench results`, `status` and `report`: what a study's output folder holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from radbench.cli.common import (
    TRACK,
    TRACK_OPTIONAL,
    Split,
    _open_store,
    _print_summary,
    app,
    err,
    out,
    user_errors,
)


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
def verify(output_dir: Path = typer.Argument(..., help="a study's output_dir")):
    """Recompute every stored job's test metrics from its stored predictions (segmentation: from its per-case
    rows), check every predictions row against its checksums, and name each job that differs or cannot be read
    (exit 1 when any does)."""
    from radbench.results.verify import verify as check

    store = _open_store(output_dir)
    checked, findings = check(store)
    for finding in findings:
        out.print(f"job {finding.job} ({finding.backbone} / {finding.dataset} / {finding.protocol} / seed "
                  f"{finding.seed}): {escape(finding.problem)}", highlight=False, soft_wrap=True)
    if findings:
        err.print(f"[bold red]verify:[/] {len(findings)} of {checked} jobs differ from what the store holds or cannot "
                  "be read; they are left out of `results` and the report — rerun them after removing their rows",
                  highlight=False)
        raise typer.Exit(1)
    err.print(f"verify: all {checked} stored jobs recompute from their stored predictions", highlight=False)


@app.command()
@user_errors
def status(output_dir: Path = typer.Argument(..., help="a study's output_dir")):
    """Where a study stands: per backbone x dataset x protocol the jobs stored, running (on which host:pid),
    failed (the error's first line) and pending. Failed and pending jobs run on the next `radbench run`."""
    rows = _open_store(output_dir).status()
    table = Table(title=f"status of {output_dir}")
    errors: dict[str, int] = {}  # each distinct error once, under the table; the table cites it by number

    def cited(error) -> str:
        number = errors.setdefault(error, len(errors) + 1)
        return f"[{number}] {error.split(':', 1)[0][:20]}"

    room = max(12, (out.width - 52) // 3)  # what each name may take beside the other columns
    for column in ("backbone", "dataset", "protocol"):  # a name folds only where it cannot fit whole
        longest = max([len(str(v)) for v in rows[column]] + [len(column)]) if len(rows) else len(column)
        table.add_column(column, overflow="fold", min_width=min(longest, room))
    table.add_column("stored", justify="right", no_wrap=True)
    table.add_column("not stored yet: failed, running, pending", overflow="fold")
    for row in rows.itertuples():
        if row.planned == 0 and not row.failed:
            table.add_row(row.backbone, row.dataset, "-", "not reached", "")
            continue
        left = []
        if row.failed:
            left.append(f"{row.failed} failed" + (f" {cited(row.error)}" if isinstance(row.error, str) and row.error
                                                 else ""))
        if row.running:
            left.append(f"{row.running} running ({row.held_by})")
        if row.pending:
            left.append(f"{row.pending} pending")
        if row.stale:
            left.append(f"{row.stale} stale claim(s): {row.stale_claims}")
        table.add_row(row.backbone, row.dataset, row.protocol, f"{row.done} of {row.planned}", "; ".join(left))
    out.print(table)
    for error, number in errors.items():
        out.print(f"[{number}] {error}", highlight=False, soft_wrap=True, markup=False)
    out.print(f"jobs: {int(rows.done.sum())} stored, {int(rows.running.sum())} running, {int(rows.failed.sum())} "
              f"failed, {int(rows.pending.sum())} pending of "
              f"{int(rows.planned.sum())} planned; units not reached: {int((rows.planned == 0).sum())}")
    if rows.stale.sum():
        out.print(f"{int(rows.stale.sum())} pending job(s) hold a stale claim (no heartbeat, or its process is gone): "
                  "the next `radbench run` takes them over")


@app.command()
@user_errors
def report(
    output_dir: Path = typer.Argument(..., help="a study's output_dir"),
    out: Optional[Path] = typer.Option(None, help="where the report goes (default OUTPUT_DIR/report)"),
    resamples: int = typer.Option(1000, min=100, help="patient-level bootstrap resamples"),
    seed: int = typer.Option(0, help="seed of the resamples"),
    patch_images: int = typer.Option(3, min=0, help="test images per dataset in the PCA patch-feature maps (0: none; "
                                     "the only part that runs a backbone)"),
    track: Optional[str] = TRACK,
    track_optional: bool = TRACK_OPTIONAL,
    reference: Optional[list[str]] = typer.Option(None, "--reference", help="published numbers to set beside the "
                                                  "study's: a shipped paper (huix2024) or a CSV of them (repeatable; "
                                                  "a study's own `reference:` is used anyway)"),
    cost_baseline: Optional[str] = typer.Option(None, "--cost-baseline", help="a backbone: every cost also as a "
                                                "multiple of its (default: the study's cost_baseline)"),
    tuning_images: int = typer.Option(32, min=0, help="test images for the CKA between each block before and after "
                                      "fine-tuning, of training jobs that saved their model (0: none; runs both)"),
    failure_images: int = typer.Option(4, "--failure-images", min=0, help="thumbnails of each backbone's most "
                                       "confidently wrong test cases per dataset, and nearest training images of two "
                                       "of them (0: none)"),
):
    """The study's answer: index.html (findings, status, leaderboards with 95 % patient-level bootstrap intervals
    and significance, ranking, curves, ROC / confusion / per-class AUROC, segmentation cases and overlays, cost,
    CKA and PCA patch maps), every figure as PNG + SVG and every table as CSV / Markdown / LaTeX."""
    from radbench.report.build import build_report
    from radbench.report.publish import check_resamples, publish
    from radbench.results.tracking import tracker_for

    target = out or output_dir / "report"
    store = _open_store(output_dir)
    check_resamples(resamples, store.largest_test_split())
    if reference:
        from radbench.references import load_reference

        for name in reference:  # a bad one is one line now, before the report's work
            load_reference(name)
    studies = sorted(store.jobs().study.unique())
    tracker = tracker_for(track, track_optional, output_dir, studies[0] if studies else output_dir.name,
                          lambda m: err.print(f"warning: {escape(m)}"))
    _, board = publish(target, lambda folder: build_report(output_dir, folder, resamples, seed, patch_images,
                                                            warn=lambda m: err.print(f"warning: {escape(m)}"),
                                                            say=lambda m: err.print(escape(m), highlight=False),
                                                            references=tuple(reference or ()),
                                                            cost_baseline=cost_baseline,
                                                            tuning_images=tuning_images,
                                                            failure_images=failure_images))
    page = target / "index.html"
    err.print(f"report: {page} ({len(board)} leaderboard rows, {resamples} patient resamples; tables in "
              f"{target / 'tables'}, figures in {target / 'figures'})")
    if tracker is not None:
        from radbench.results.tracking import after_the_run

        done = after_the_run(lambda: (tracker.sync(store), tracker.log_report(target)), "logging the report",
                             output_dir, track_optional, lambda m: err.print(f"warning: {escape(m)}"))
        if done is not None:
            logged, run_id = done
            err.print(f"tracking: the page and tables logged to MLflow run {run_id} at {tracker.uri} ({logged} "
                      "job(s) not logged before were logged too)", highlight=False)

"""`radbench report`: a results folder -> index.html, figures/ and tables/. Reads the store and the cached
features; trains nothing (patch-feature maps run the backbone on a few test images only)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.errors import RadbenchError
from radbench.paths import job_folder
from radbench.report import failures, figures, leaderboard_page, plots, published, retrieval_page, tuning_cka
from radbench.report.answer import answer, headline_metrics
from radbench.report.api import Results, load
from radbench.report.costs import machine_note, relative_costs
from radbench.report.generalisation_page import generalisation_section
from radbench.report.html import Page, Section, findings
from radbench.report.measured import selection_notes
from radbench.report.pretraining_log import pretraining_log
from radbench.report.tables import write_table
from radbench.report.verdicts import MIN_RUNS
from radbench.results.store import PER_CASE_TASKS


def build_report(output_dir: Path, out: Path, resamples: int = 1000, seed: int = 0, patch_images: int = 3,
                 warn=print, say=lambda message: None, references: tuple[str, ...] = (),
                 cost_baseline: str | None = None, tuning_images: int = 32,
                 failure_images: int = 4) -> tuple[Path, pd.DataFrame]:
    """`say` hears each step as it starts (the CLI prints them: a large study's report takes minutes);
    `references`: published numbers to compare with besides those the study named (radbench/references)."""
    start = time.perf_counter()
    results = load(output_dir)
    every_job = _usable_jobs(results, output_dir, warn)
    jobs = every_job[~every_job.protocol.str.contains("@corrupt:", regex=False)]  # their own section below
    say(f"report: leaderboard of {len(jobs)} jobs ({resamples} patient resamples each)")
    board = results.leaderboard(resamples, seed)
    page = Page(out, ", ".join(sorted(jobs.study.unique())) or Path(output_dir).resolve().name)
    tables = out / "tables"
    write_table(board, tables, "leaderboard")
    headline = headline_metrics(board)

    page.section("The answer").lines(answer(board, headline) or ["no stored test predictions yet"])
    summary = page.section("What this study found")
    summary.lines(findings(board, headline) or ["no stored test predictions yet"])
    summary.text(f"Means over runs (seeds × repeated draws). 95 % intervals cover both sources of variance where "
                 f"runs differ: {resamples} resamples of the test patients (cases for segmentation) for the part "
                 "of the test-set variance the runs share, the spread of the runs' scores for the run part, the "
                 "uncertainty of that spread from few runs carried whole (a fiducial interval: Student's t where runs "
                 "dominate); where every run gave the same predictions, or there is one run, the interval covers the "
                 "test patients only and says so. Comparisons with the best backbone pair runs of the same seed and "
                 "draw and use the same patient resamples (a run-aware paired test); with runs that differ but fewer "
                 f"than {MIN_RUNS} per backbone the verdict is 'too few runs to tell'; DeLong's test (binary AUROC) "
                 "or a "
                 "patient-paired bootstrap where runs are identical. Holm-corrected within each dataset × protocol × "
                 "metric.")
    _measured(page, results, jobs, tables)
    published.section(page, board, jobs, _references(results, references), tables, results.store.deviations())
    _status(page, results.status, tables)
    metric = "auroc"
    if board[board.metric == metric].dataset.nunique() > 1:
        section = page.section("Ranking across datasets")
        page.figure(section, figures.ranking_plot(board, metric), f"ranking-{metric}", "mean rank",
                    "Mean rank of each backbone over the datasets (1 = best), per protocol; bars: std over datasets.")
        write_table(figures.mean_rank(board, metric), tables, f"ranking-{metric}")
    pretraining_log(page, Path(output_dir), warn)
    costs = relative_costs(_costs(results), cost_baseline or results.store.cost_baseline(), warn)
    if not costs.empty:
        write_table(costs, tables, "costs")
    datasets = sorted(board.dataset.unique())
    for number, dataset in enumerate(datasets, 1):
        say(f"report: dataset {dataset} ({number} of {len(datasets)}; {time.perf_counter() - start:.0f} s so far)")
        section = page.section(f"Dataset {dataset}", dataset=dataset)
        dataset_jobs = jobs[jobs.dataset == dataset]
        leaderboard_page.section(page, section, board, dataset, headline[dataset], resamples)
        retrieval_page.section(section, board, dataset)
        section.lines(selection_notes(dataset_jobs))
        _curves(page, section, board, dataset, headline[dataset], dataset_jobs)
        _per_sample(page, section, results, dataset_jobs, tables)
        if not dataset_jobs.empty and (dataset_jobs.task.isin(["binary", "multiclass", "ordinal"])).any():
            failures.section(page, section, results.store, dataset, tables, images=failure_images, warn=warn)
        _clinical(page, section, results, dataset, dataset_jobs, tables, seed)
        _segmentation(page, section, results, dataset, dataset_jobs, Path(output_dir))
        points = board[(board.dataset == dataset) & (board.metric == headline[dataset])
                       & ~board.protocol.str.contains("@external:", regex=False)]  # no costs of their own
        points = points.merge(costs, on=["backbone", "dataset", "protocol"], how="left") if not costs.empty else None
        if points is not None and len(points) > 1:
            page.figure(section, plots.cost_scatter(points, headline[dataset], f"{dataset}: {headline[dataset]} "
                        "against cost"), f"cost-{dataset}", f"{dataset} cost",
                        "Mean over seeds; one point per backbone × protocol; a cost equal for every point is left "
                        f"out of the panels (named in the title). {machine_note(dataset_jobs)}")
        _representations(page, section, results, dataset, tables, patch_images, warn)
        tuning_cka.section(page, section, results, dataset, tuning_images, tables, warn)
    say("report: external tests, subgroups, robustness")
    generalisation_section(page, results.store, every_job, tables, resamples, seed)
    return page.write(), board


def _references(results: Results, extra: tuple[str, ...]) -> pd.DataFrame:
    """The published numbers the study named at run time, and those given to `report --reference`."""
    from radbench.references import load_reference

    frames = [results.store.references(), *(load_reference(name) for name in extra)]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True).drop_duplicates(["reference", "table", "row", "dataset", "metric"]) \
        if frames else pd.DataFrame()


def _usable_jobs(results: Results, output_dir: Path, warn) -> pd.DataFrame:
    """The stored jobs whose test predictions can be read; the others are named in one warning and left out. A
    store whose every job is unusable is an error (an empty page would say nothing)."""
    jobs = results.store.jobs()
    unusable = results.store.unusable_predictions()
    if unusable and len(unusable) == len(jobs):
        raise RadbenchError(f"{output_dir}: none of the {len(jobs)} stored jobs has usable test predictions "
                            f"({next(iter(unusable.values()))}); rerun `radbench run` after moving results.sqlite "
                            "aside, or report another output_dir")
    if unusable:
        listed = "; ".join(f"{key}: {why}" for key, why in list(unusable.items())[:5])
        warn(f"{len(unusable)} of {len(jobs)} jobs left out of the report ({listed}"
             f"{' ...' if len(unusable) > 5 else ''})")
    elif jobs.empty:
        warn(f"{output_dir}: no job stored yet; the page shows the study's status only")
    return jobs[~jobs.key.isin(unusable)].reset_index(drop=True)


def _measured(page: Page, results: Results, jobs: pd.DataFrame, tables: Path) -> None:
    """Which weights each backbone had and how large each test set is: what every number below stands on."""
    from radbench.report.measured import backbone_rows, dataset_rows, patient_note

    backbones, datasets = backbone_rows(jobs), dataset_rows(results.store, jobs)
    if backbones.empty:
        return
    section = page.section("What was measured")
    write_table(backbones, tables, "backbones")
    write_table(datasets, tables, "datasets")
    section.table(["backbone", "weights", "model"], [[r.backbone, r.weights, r.model] for r in backbones.itertuples()],
                  ["failed" if r.random_init else "" for r in backbones.itertuples()])
    if backbones.random_init.any():
        section.text("RANDOM INITIALISATION: the backbones marked in red had no pretrained weights (`weights: none`); "
                     "their numbers measure an untrained architecture, not a foundation model.")
    section.table(["dataset", "task", "test patients", "test images / cases", "positives per class (test)"],
                  [[r.dataset, r.task, r.test_patients, r.test_samples, r.positives] for r in datasets.itertuples()])
    if patient_note(datasets):
        section.text(patient_note(datasets))


def _status(page: Page, status: pd.DataFrame, tables: Path) -> None:
    if status.empty:
        return
    write_table(status, tables, "status")
    incomplete = status[(status.done < status.planned) | (status.planned == 0)]
    if incomplete.empty:
        return
    section = page.section("Study status")
    unreached = status[status.planned == 0]
    line = f"{int(status.done.sum())} of {int(status.planned.sum())} planned jobs stored"
    line += f"; {int(status.failed.sum())} failed" if status.failed.sum() else ""
    if len(unreached):
        line += f"; {len(unreached)} backbone × dataset units not reached yet (their jobs are not counted)"
    section.lines([line + ". Rerun `radbench run` with the same study to finish it."])
    rows, classes = [], []
    for row in incomplete.itertuples():
        stored = "not reached" if row.planned == 0 else f"{row.done} of {row.planned}"
        rows.append([row.backbone, row.dataset, row.protocol or "—", stored, row.failed,
                     row.error if isinstance(row.error, str) else ""])
        classes.append("failed" if row.failed else "")
    section.table(["backbone", "dataset", "protocol", "stored", "failed", "last error"], rows, classes)


def _curves(page: Page, section: Section, board: pd.DataFrame, dataset: str, metric: str, jobs: pd.DataFrame):
    points = figures.curve_points(board[board.dataset == dataset], metric)
    zero = board[(board.dataset == dataset) & (board.metric == metric)
                 & board.protocol.str.fullmatch(r"zero_shot[^@]*")]  # no labelled patient: a level across the curve
    for curve, rows in points.groupby("curve"):
        shots = rows.axis.iloc[0].startswith("patients") and not zero.empty
        page.figure(section, figures.curve_plot(rows, dataset, curve, metric, zero if shots else None),
                    f"curve-{dataset}-{curve}-{metric}", f"{dataset} / {curve}",
                    "Mean over seeds and repeats; band: 95 % bootstrap interval."
                    + (" Dashed: zero-shot (no labelled patient), dotted its 95 % interval: where a curve crosses "
                       "it, that many labelled patients per class beat the prompts." if shots else ""), half=True)
    _prompt_sensitivity(section, jobs, dataset)
    pretrained = figures.pretraining_points(board[board.dataset == dataset], metric)
    for run, rows in pretrained.groupby("curve"):
        page.figure(section, figures.curve_plot(rows, dataset, f"{run} pretraining", metric),
                    f"pretraining-{dataset}-{run}-{metric}", f"{dataset} / {run} pretraining",
                    "Each saved teacher of `radbench pretrain`, evaluated by its study; one line per protocol. "
                    "Mean over seeds; band: 95 % bootstrap interval.", half=True)
    sizes = _resolutions(jobs)
    rows = board[(board.dataset == dataset) & (board.metric == metric)].merge(sizes, on="backbone")
    for protocol, group in rows.groupby("protocol"):
        if group.groupby("model").image_size.nunique().max() > 1:  # one line per model, x: its input size
            points = group.drop(columns="backbone").rename(columns={"model": "backbone", "image_size": "x"})
            page.figure(section, figures.curve_plot(points.assign(axis="input resolution (px)"), dataset,
                                                    f"{protocol} resolution", metric),
                        f"resolution-{dataset}-{protocol}-{metric}", f"{dataset} {protocol} resolution", half=True)
    tuned = board[(board.dataset == dataset) & (board.metric == metric) & board.protocol.isin(plots.FROZEN +
                                                                                              plots.TUNED)]
    if tuned.protocol.isin(plots.TUNED).any() and tuned.protocol.isin(plots.FROZEN).any():
        page.figure(section, plots.adaptation_bars(tuned, metric, f"{dataset}: frozen vs fine-tuned vs PEFT"),
                    f"adaptation-{dataset}-{metric}", f"{dataset} adaptation",
                    "Plain bars: frozen backbone; dotted: the backbone trained (fully, LoRA or BitFit).")


def _prompt_sensitivity(section: Section, jobs: pd.DataFrame, dataset: str) -> None:
    """Zero-shot jobs: the test metric of each template alone and of their ensemble (shown, never chosen on)."""
    rows = []
    for job in jobs[(jobs.dataset == dataset) & (jobs.protocol_type == "zero_shot")
                    & ~jobs.protocol.str.contains("@", regex=False)].itertuples():
        details = json.loads(job.details) if isinstance(job.details, str) else job.details
        stored = details.get("templates_test", {})
        values = {k: stored[k] for k in ["ensemble", *sorted(set(stored) - {"ensemble"})] if stored[k] is not None}
        if values:
            spread = np.array([v for k, v in values.items() if k != "ensemble"], dtype=float)
            rows.append([job.backbone, job.protocol, job.seed, *(f"{values.get(k, np.nan):.3f}" for k in values),
                         f"{np.nanmax(spread) - np.nanmin(spread):.3f}" if len(spread) else "–"])
            header = list(values)
    if rows:
        section.heading("Prompt sensitivity (zero-shot)")
        section.text("Test metric of each template alone and of the ensemble (mean of the normalised text embeddings);"
                     " spread = best − worst single template. Shown only: nothing is chosen on test.")
        section.table(["backbone", "protocol", "seed", *header, "spread"], rows)


def _resolutions(jobs: pd.DataFrame) -> pd.DataFrame:
    """backbone label -> (model: the backbone without its label and size, image_size), where one model ran at
    several sizes."""
    rows = []
    for job in jobs.drop_duplicates("backbone").itertuples():
        config = json.loads(job.config)
        backbone = {k: v for k, v in config["backbone"].items() if k not in ("label", "image_size", "identity")}
        rows.append({"backbone": job.backbone, "model": config["backbone"]["name"],
                     "model_key": json.dumps(backbone, sort_keys=True),
                     "image_size": config.get("preprocess", {}).get("image_size")})
    frame = pd.DataFrame(rows, columns=["backbone", "model", "model_key", "image_size"])
    several = frame.groupby("model_key").image_size.transform("nunique") > 1
    return frame[several].drop(columns="model_key")


def _first_runs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per backbone x protocol (points of curves left out), the job of its first seed and repeat."""
    jobs = jobs[~jobs.protocol.str.contains("@")]
    return jobs.sort_values(["seed", "repeat"]).drop_duplicates(["backbone", "protocol"]).sort_values("backbone")


def _per_sample(page: Page, section: Section, results: Results, jobs: pd.DataFrame, tables: Path) -> None:
    jobs = jobs[~jobs.task.isin(PER_CASE_TASKS)]
    if jobs.empty:
        return
    task = Task(jobs.task.iloc[0])
    dataset = jobs.dataset.iloc[0]
    for protocol, group in _first_runs(jobs).groupby("protocol"):
        runs = [(job.backbone, *results.store.predictions(job.key)) for job in group.itertuples()]
        if task is Task.BINARY:
            page.figure(section, plots.roc_curves([(b, t.argmax(1), s[:, 1]) for b, _, _, t, s in runs],
                                                  f"{dataset} / {protocol}: ROC (first seed)"),
                        f"roc-{dataset}-{protocol}", f"{dataset} {protocol} ROC", half=True)
        elif task in (Task.MULTICLASS, Task.ORDINAL):
            page.figure(section, plots.confusion_matrices([(b, t.argmax(1), s.argmax(1)) for b, _, _, t, s in runs],
                                                          list(runs[0][1]), f"{dataset} / {protocol}: confusion "
                                                          "(first seed; colour: share of the true class)"),
                        f"confusion-{dataset}-{protocol}", f"{dataset} {protocol} confusion")
    rows = results.results
    rows = rows[(rows.dataset == dataset) & rows.metric.str.startswith("auroc/")
                & ~rows.protocol.str.contains("@")]
    if rows.empty:
        return
    rows = rows.assign(cls=rows.metric.str.removeprefix("auroc/"))
    per_class = rows.groupby(["protocol", "backbone", "cls"]).value.mean().reset_index()
    class_names, _, targets, _ = results.store.predictions(jobs.key.iloc[0])  # every job: the same test split
    positives = {name: int(np.nansum(targets[:, c])) for c, name in enumerate(class_names)}
    per_class["positives"] = per_class.cls.map(positives)
    write_table(per_class.rename(columns={"cls": "class", "value": "auroc"}), tables, f"per-class-auroc-{dataset}")
    table = per_class.assign(row=per_class.backbone + " / " + per_class.protocol).pivot(
        index="row", columns="cls", values="value")
    table.columns = [f"{name} ({positives.get(name, '?')} pos)" for name in table.columns]
    page.figure(section, plots.per_class_heatmap(table, f"{dataset}: AUROC per class"),
                f"per-class-auroc-{dataset}", f"{dataset} per-class AUROC",
                "Mean over seeds, per backbone / protocol; beside each class its positives in the test split (an "
                "AUROC on a handful of positives can swing from 0.5 to 1.0 on one case).")


def _clinical(page: Page, section: Section, results: Results, dataset: str, jobs: pd.DataFrame, tables: Path,
              seed: int) -> None:
    """Operating points (threshold chosen on val) and calibration, with intervals; reliability diagrams."""
    from radbench.report.clinical import RESAMPLES, SHOWN, clinical_rows, reliability_points

    rows = clinical_rows(results.store, jobs, seed)
    if rows.empty:
        return
    write_table(rows, tables, f"clinical-{dataset}")
    section.text("Operating points and calibration (macro mean over classes; the positive class of a binary task): "
                 "sensitivity at 90 % specificity and the converse on the test ROC; sensitivity, specificity, PPV "
                 "and NPV at the threshold with the best Youden's J on val, applied once to test; Brier score and "
                 "expected calibration error (10 equal-mass bins)"
                 + ("; '@calibrated': after the protocol's `calibrate:` map, fitted on val only" if
                    rows.metric.str.endswith("@calibrated").any() else "")
                 + f". Mean over runs; 95 % interval from {RESAMPLES} "
                 "patient resamples, runs resampled within each where they differ (the 'covers' column)."
                 + (f" Per class, with the same intervals: tables/clinical-{dataset}.csv." if
                    rows.metric.str.contains("/").any() else ""))
    wide = rows.assign(cell=[f"{m:.3f} ({lo:.3f}–{hi:.3f})" for m, lo, hi in zip(rows["mean"], rows.ci_low,
                                                                                  rows.ci_high)])
    macro = wide[~wide.metric.str.contains("/")]
    table = macro.pivot_table(index=["protocol", "backbone", "interval"], columns="metric", values="cell",
                             aggfunc="first").reset_index()
    metrics = [m for m in SHOWN if m in table.columns]
    section.table(["protocol", "backbone", "covers", *metrics],
                  [[r["protocol"], r["backbone"], r["interval"], *(r[m] if isinstance(r[m], str) else "—"
                                                                   for m in metrics)]
                   for _, r in table.iterrows()])
    points = reliability_points(results.store, jobs)
    for protocol, group in points.groupby("protocol"):
        page.figure(section, plots.reliability_diagram(group, f"{dataset} / {protocol}: reliability (first run)"),
                    f"reliability-{dataset}-{protocol}", f"{dataset} {protocol} reliability",
                    "Observed rate of positives against the mean predicted probability in 10 equal-mass bins; "
                    "calibrated models lie on the diagonal.", half=True)


def _segmentation(page: Page, section: Section, results: Results, dataset: str, jobs: pd.DataFrame,
                  output_dir: Path) -> None:
    jobs = jobs[jobs.task == "segmentation"]
    if jobs.empty:
        return
    cases = results.samples
    cases = cases[(cases.dataset == dataset) & (cases.metric == "dice")]
    volumes = json.loads(jobs.config.iloc[0])["dataset"].get("volume") is not None
    unit = "volume" if volumes else "case"
    if not cases.empty:  # each case once per backbone x protocol: its mean over seeds
        mean = cases.groupby(["backbone", "protocol", "sample_id"]).value.mean().reset_index()
        page.figure(section, plots.case_distribution(mean, "Dice", f"{dataset}: Dice per {unit}", unit),
                    f"dice-per-{unit}-{dataset}", f"{dataset} Dice per {unit}",
                    f"Each point one test {unit} (mean over seeds).")
    images = []
    for job in _first_runs(jobs).itertuples():
        folder = job_folder(output_dir, "segmentation", job.backbone, dataset, job.protocol, job.seed, job.repeat)
        found = sorted((folder / "overlays").glob("*.png"))  # where the run wrote them
        images += [{"title": f"{job.backbone} / {job.protocol} / {p.stem}",
                    "png": base64.b64encode(p.read_bytes()).decode()} for p in found[:3]]
    if images:
        section.blocks.append({"kind": "gallery", "images": images,
                               "caption": "Overlays (image | ground truth | prediction of the backbone named above "
                                          "each), first seed."})



def _costs(results: Results) -> pd.DataFrame:
    """Mean cost per backbone x dataset x protocol: trainable params, train seconds, ms per image, peak MB."""
    rows = results.costs
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(protocol=[f"{p} ({s})" if s else p for p, s in zip(rows.protocol, rows.setting)])
    table = rows.groupby(["backbone", "dataset", "protocol", "metric"]).value.mean().unstack("metric")
    return table.reindex(columns=[c for c in plots.COSTS if c in table.columns]).reset_index()


def _representations(page: Page, section: Section, results: Results, dataset: str, tables: Path,
                     patch_images: int, warn) -> None:
    matrix = results.cka(dataset)
    if len(matrix) > 1:
        write_table(matrix.reset_index(names="backbone"), tables, f"cka-{dataset}")
        page.figure(section, plots.cka_heatmap(matrix, f"{dataset}: linear CKA between backbones"),
                    f"cka-{dataset}", f"{dataset} CKA", "CLS (or pooled) features of the test images.")
    for backbone in sorted(results.store.jobs().query("dataset == @dataset").backbone.unique()):
        layers = results.cka(dataset, backbone=backbone)
        if len(layers) > 1:
            page.figure(section, plots.cka_heatmap(layers, f"{dataset}: {backbone}, CKA between blocks"),
                        f"cka-layers-{dataset}-{backbone}", f"{dataset} {backbone} layer CKA")
    if patch_images:
        from radbench.report.patches import patch_maps

        figure = patch_maps(results, dataset, patch_images, warn)
        if figure is not None:
            page.figure(section, figure, f"pca-patches-{dataset}", f"{dataset} PCA patch maps",
                        "First three principal components of each backbone's patch tokens (fitted on these images "
                        "together) as RGB, one row per backbone under the images; patches whose first component is "
                        "below 0 (background) are dimmed.")

"""Where each model fails: the test cases each backbone gets wrong, and whether the backbones fail on the same ones.

For one dataset and protocol (single-label tasks), a backbone's prediction for a case is the arg-max of its class
scores averaged over runs (seeds x repeats). Per backbone: the cases it gets most confidently wrong (lowest
averaged probability of the true class). Per pair of backbones: how many cases both, only one or neither get wrong,
Cohen's kappa of their error indicators (1: the same cases; 0: no more overlap than chance) and McNemar's exact
test (a binomial test on the cases exactly one of them gets wrong). Cases every backbone gets wrong are candidates
for label noise. McNemar's p-value covers the test cases only, not run-to-run spread: the leaderboard's run-aware
verdict is the comparison of record; this one says where the errors lie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radbench.errors import RadbenchError

PAGE_NOTE = ("κ of two backbones' errors: 1 = they fail on the same cases, 0 = no more overlap than chance. McNemar's "
             "exact test (on the cases exactly one of the two gets wrong) covers the test cases only, not run-to-run "
             "spread: the leaderboard's run-aware verdict is the comparison of record; this part shows where the "
             "errors lie.")


def case_outcomes(predictions: pd.DataFrame, dataset: str, protocol: str) -> pd.DataFrame:
    """One row per backbone x test case: truth, predicted class, probability of the truth, whether wrong, runs."""
    rows = predictions[(predictions.dataset == dataset) & (predictions.protocol == protocol)]
    if rows.empty:
        raise RadbenchError(f"no stored test predictions for dataset {dataset!r} / protocol {protocol!r}")
    targets = [c for c in rows.columns if c.startswith("target_")]
    scores = [c for c in rows.columns if c.startswith("score_")]
    truth = rows[targets].to_numpy(dtype=float)
    if np.isnan(truth).any() or not np.allclose(truth.sum(axis=1), 1.0):
        raise RadbenchError(f"dataset {dataset!r} is multi-label: where-it-fails covers single-label tasks")
    classes = [c.removeprefix("score_") for c in scores]
    frame = rows.assign(truth_index=truth.argmax(axis=1), run=rows.seed.astype(str) + "/" + rows.repeat.astype(str))
    mean = frame.groupby(["backbone", "sample_id"])[scores].mean()
    first = frame.groupby(["backbone", "sample_id"]).agg(patient_id=("patient_id", "first"),
                                                         truth_index=("truth_index", "first"), runs=("run", "nunique"))
    probabilities = mean.to_numpy()
    predicted = probabilities.argmax(axis=1)
    truth_index = first.truth_index.to_numpy()
    return pd.DataFrame({
        "backbone": first.index.get_level_values(0), "sample_id": first.index.get_level_values(1),
        "patient_id": first.patient_id.to_numpy(), "truth": [classes[i] for i in truth_index],
        "predicted": [classes[i] for i in predicted],
        "p_truth": probabilities[np.arange(len(predicted)), truth_index], "wrong": predicted != truth_index,
        "runs": first.runs.to_numpy()})


def most_confident_errors(outcomes: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Per backbone, its `top` wrong cases with the lowest probability of the true class."""
    wrong = outcomes[outcomes.wrong].sort_values(["backbone", "p_truth", "sample_id"])
    return wrong.groupby("backbone").head(top).reset_index(drop=True)


def error_agreement(outcomes: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(one row per pair of backbones: both / only-a / only-b wrong, kappa, McNemar p; a summary: cases, errors per
    backbone, cases every backbone gets wrong). Backbones are compared on the cases all of them were tested on."""
    from itertools import combinations

    from scipy.stats import binomtest
    from sklearn.metrics import cohen_kappa_score

    errors = outcomes.pivot(index="sample_id", columns="backbone", values="wrong").dropna().astype(bool)
    order = errors.sum().sort_values(kind="stable").index.tolist()  # fewest errors first
    rows = []
    for a, b in combinations(order, 2):
        only_a, only_b = int((errors[a] & ~errors[b]).sum()), int((errors[b] & ~errors[a]).sum())
        discordant = only_a + only_b
        constant = errors[a].nunique() < 2 and errors[b].nunique() < 2
        rows.append({"backbone_a": a, "backbone_b": b, "cases": len(errors), "both_wrong": int((errors[a] & errors[b]).sum()),
                     "only_a_wrong": only_a, "only_b_wrong": only_b,
                     "neither_wrong": int((~errors[a] & ~errors[b]).sum()),
                     "kappa": float("nan") if constant else float(cohen_kappa_score(errors[a], errors[b])),
                     "mcnemar_p": binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0})
    summary = {"cases": len(errors), "errors": {name: int(errors[name].sum()) for name in order},
               "all_wrong": int(errors.all(axis=1).sum()) if order else 0, "backbones": order}
    return pd.DataFrame(rows), summary


def default_protocol(predictions: pd.DataFrame, dataset: str) -> str | None:
    """The protocol to look at: among those with the most backbones on this dataset, the one whose best backbone
    is most accurate (scores averaged over runs). None when the dataset has no stored predictions."""
    chosen = _default_outcomes(predictions, dataset)
    return None if chosen is None else chosen[0]


def _default_outcomes(predictions: pd.DataFrame, dataset: str) -> tuple[str, pd.DataFrame] | None:
    """(default_protocol, its case outcomes), each protocol's outcomes computed once."""
    rows = predictions[predictions.dataset == dataset]
    if rows.empty:
        return None
    width = rows.groupby("protocol").backbone.nunique()
    best, outcomes = {}, {}
    for protocol in width[width == width.max()].index:
        try:
            outcomes[protocol] = case_outcomes(predictions, dataset, protocol)
        except RadbenchError:
            continue
        best[protocol] = 1.0 - outcomes[protocol].groupby("backbone").wrong.mean().min()
    if not best:
        return None
    protocol = max(sorted(best), key=best.get)
    return protocol, outcomes[protocol]


def section(page, section, store, dataset: str, tables, top: int = 5, images: int = 4, warn=print) -> None:
    """The dataset's "Where each model fails" part of the page, and tables/failures-* and error-agreement-*;
    `images`: thumbnails of each backbone's first `images` wrong cases, and the nearest training images of two of
    them (0: none)."""
    from radbench.report.tables import write_table
    from radbench.results.tables import predictions

    chosen = _default_outcomes(predictions(store, dataset=dataset), dataset)
    if chosen is None:
        return
    protocol, outcomes = chosen
    errors = most_confident_errors(outcomes, top)
    pairs, summary = error_agreement(outcomes)
    runs = int(outcomes.runs.max())
    section.heading(f"Where each model fails ({protocol})")
    section.text(f"Each backbone's prediction for a test case is the class with the highest score averaged over its "
                 f"{runs} run(s); {summary['cases']} test cases. {PAGE_NOTE}")
    if len(summary["backbones"]) < 2:
        section.lines([f"one backbone: no comparison; it gets {summary['errors'][summary['backbones'][0]]} of "
                       f"{summary['cases']} cases wrong"])
    else:
        section.lines([f"{summary['all_wrong']} of {summary['cases']} cases are wrong for every backbone (candidates "
                       "for label noise, or hard cases)"])
        section.table(["backbone A", "backbone B", "both wrong", "only A wrong", "only B wrong", "κ of errors",
                       "McNemar p (test cases only)"],
                      [[r.backbone_a, r.backbone_b, r.both_wrong, r.only_a_wrong, r.only_b_wrong,
                        "-" if np.isnan(r.kappa) else f"{r.kappa:.2f}", f"{r.mcnemar_p:.3g}"]
                       for r in pairs.itertuples()])
        write_table(pairs.assign(dataset=dataset, protocol=protocol), tables, f"error-agreement-{dataset}")
    section.table(["backbone", "case", "patient", "truth", "predicted", "p(truth)"],
                  [[r.backbone, r.sample_id, r.patient_id, r.truth, r.predicted, f"{r.p_truth:.3f}"]
                   for r in errors.itertuples()])
    write_table(errors.assign(dataset=dataset, protocol=protocol), tables, f"failures-{dataset}")
    if images:
        _pictures(page, section, store, dataset, protocol, errors, outcomes, images, warn, tables)


def _pictures(page, section, store, dataset: str, protocol: str, errors: pd.DataFrame, outcomes: pd.DataFrame,
              images: int, warn, tables) -> None:
    """Thumbnails of the wrong cases and, for up to two cases (those every backbone gets wrong first), the
    nearest training images under each backbone's features. Unreadable data: a warning, the rest renders."""
    import json

    from radbench.report.failure_images import (
        error_thumbnails,
        loaded_dataset,
        nearest_cases,
        nearest_training_images,
    )
    from radbench.report.tables import write_table

    jobs = store.jobs().query("dataset == @dataset")
    try:
        data = loaded_dataset(json.loads(jobs.config.iloc[0]))
    except Exception as error:  # the data moved since the run: the rest of the report still renders
        warn(f"failure images of {dataset} skipped: its images cannot be read ({type(error).__name__}: {error})")
        return
    if data is None:
        return
    shown = errors.groupby("backbone").head(images)
    if shown.empty:
        return  # every backbone right on every case: nothing to show
    page.figure(section, error_thumbnails(data, shown, f"{dataset} / {protocol}: most confidently wrong test cases"),
                f"failures-{dataset}", f"{dataset} failures", "Per backbone, its wrong cases with the lowest "
                "probability of the true class (averaged over runs); above each: case, truth, p(truth), patient.")
    wrong = outcomes[outcomes.wrong]
    everyone = wrong.groupby("sample_id").backbone.nunique() == outcomes.backbone.nunique()
    order = wrong.groupby("sample_id").p_truth.mean().sort_values(kind="stable")
    queries = [c for c in order.index if everyone.get(c, False)][:2] or list(order.index[:2])
    of_protocol = jobs[jobs.protocol == protocol]
    neighbours = nearest_cases(Path(store.path).parent, dataset, data, of_protocol, [str(c) for c in queries])
    figure = nearest_training_images(neighbours, dataset, data)
    if figure is not None:
        write_table(neighbours.assign(dataset=dataset), tables, f"neighbours-{dataset}")
        page.figure(section, figure, f"neighbours-{dataset}", f"{dataset} nearest training images",
                    "For wrong test cases (those every backbone gets wrong first): the most similar training images "
                    "under each backbone's cached features (cosine), with their labels — what a kNN reads.")

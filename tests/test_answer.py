"""The answer first (issue 37): the page opens with, per dataset, the recommended backbone x protocol, its margin to
the runner-up and the leaderboard's verdict, in the leaderboard's own numbers; it says when nothing can be told and
what to run next; one backbone gets no recommendation over others."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from radbench.report.answer import answer
from tests.conftest import tiny_study, write_study


def row(backbone, protocol, mean, verdict="best", dataset="cxr", low=None, high=None, runs=3, p=float("nan")):
    return {"backbone": backbone, "dataset": dataset, "protocol": protocol, "metric": "auroc", "mean": mean,
            "ci_low": mean - 0.05 if low is None else low, "ci_high": mean + 0.05 if high is None else high,
            "interval": "runs × test patients", "runs": runs, "seeds": runs, "verdict": verdict, "p_vs_best": p,
            "test_size": 300, "detectable_difference": 0.071, "contains_chance": False}


def test_a_significant_winner_is_recommended_with_the_leaderboards_numbers():
    board = pd.DataFrame([row("dino", "linear", 0.9012), row("clip", "linear", 0.8123, "significantly worse", p=0.004),
                          row("dino", "knn", 0.8790), row("clip", "knn", 0.8001, "significantly worse", p=0.01)])
    [sentence] = answer(board, {"cxr": "auroc"})
    assert sentence.startswith("cxr: dino with linear scores the highest auroc, 0.9012 (95 % CI 0.8512–0.9512")
    assert "the recommendation. The runner-up clip (0.8123, 0.0889 lower) is significantly worse (p 0.004" in sentence
    assert "as good as far as this study can tell: dino with knn (0.8790)" in sentence


def test_a_tie_says_nothing_can_be_told_and_how_large_a_difference_could_be():
    board = pd.DataFrame([row("dino", "linear", 0.80), row("clip", "linear", 0.79, "not significantly different",
                                                           p=0.61)])
    [sentence] = answer(board, {"cxr": "auroc"})
    assert "not significantly different (p 0.61): this study cannot tell them apart" in sentence
    assert "detects a difference of 0.071 or more" in sentence and "recommendation" not in sentence


def test_a_backbone_that_wins_an_external_test_is_named_as_what_could_change_the_answer():
    board = pd.DataFrame([row("dino", "linear", 0.90), row("clip", "linear", 0.80, "significantly worse", p=0.001),
                          row("clip", "linear@external:chexpert", 0.78),
                          row("dino", "linear@external:chexpert", 0.70, "significantly worse", p=0.01),
                          row("dino", "linear@external:nih", 0.75),
                          row("clip", "linear@external:nih", 0.74, "not significantly different", p=0.5)])
    [sentence] = answer(board, {"cxr": "auroc"})
    assert sentence.startswith("cxr: dino with linear scores the highest auroc, 0.9000")  # in-domain decides
    assert ("What could change the answer: on the external test chexpert, clip scores higher (0.7800 against "
            "0.7000), significantly.") in sentence
    assert "external test nih" not in sentence  # there the recommendation stays ahead


def test_too_few_runs_asks_for_three_seeds():
    board = pd.DataFrame([row("dino", "linear", 0.80, runs=2), row("clip", "linear", 0.70, "too few runs to tell",
                                                                   runs=2)])
    [sentence] = answer(board, {"cxr": "auroc"})
    assert "too few runs to tell them apart — run at least 3 seeds" in sentence


def test_one_backbone_is_never_ranked_or_recommended():
    board = pd.DataFrame([row("dino", "linear", 0.80), row("dino", "knn", 0.83)])
    [sentence] = answer(board, {"cxr": "auroc"})
    assert sentence.startswith("cxr: one backbone (dino), so nothing is compared; its highest auroc is with knn")
    assert not re.search(r"\bbest\b|recommend|rank", sentence)


def test_across_datasets_names_who_wins_where():
    board = pd.DataFrame([row("dino", "linear", 0.9), row("clip", "linear", 0.8, "significantly worse", p=0.01),
                          row("dino", "linear", 0.7, dataset="mri"),
                          row("clip", "linear", 0.75, "best", dataset="mri")])
    board.loc[2, "verdict"] = "not significantly different"
    sentences = answer(board, {"cxr": "auroc", "mri": "auroc"})
    assert sentences[-1] == ("Across the 2 datasets no backbone scores highest on all: clip on mri; dino on cxr "
                             "(significantly ahead of the runner-up on 1 of them).")


@pytest.mark.slow
def test_the_page_opens_with_the_answer_equal_to_the_leaderboard(tmp_path, pneumonia_npz, cli):
    import radbench

    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 100}],
                       [{"knn": {"k": [5]}}], seeds=[0, 1, 2],
                       backbones=[{"name": "timm:test_vit", "weights": "none"},
                                  {"name": "timm:test_vit2", "weights": "none"}])
    radbench.run(write_study(tmp_path, study))
    result = cli("report", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    sections = re.findall(r"<h2 id=\"[^\"]*\">([^<]+)</h2>", page)
    assert sections[0] == "The answer"
    board = pd.read_csv(tmp_path / "out" / "report" / "tables" / "leaderboard.csv")
    top = board[board.metric == "auroc"].sort_values("mean").iloc[-1]
    first = page.split("The answer</h2>")[1].split("</ul>")[0]
    assert f"{top.backbone} with {top.protocol} scores the highest auroc, {top['mean']:.4f}" in first
    assert f"95 % CI {top.ci_low:.4f}–{top.ci_high:.4f}" in first
    assert radbench.load(tmp_path / "out").answer()[0] in first.replace("&#39;", "'")


def test_two_differing_runs_get_the_test_interval_labelled_as_such_not_zero_to_one():
    """Student's t on one degree of freedom would fill [0, 1]: two runs that differ show the test-patient interval,
    labelled with what it leaves out and the fix; three runs get both sources of variance."""
    import numpy as np

    from radbench.report.verdicts import INTERVAL_ALL, Runs, interval, two_level_draws

    rng = np.random.default_rng(0)
    draws = rng.normal(0.8, 0.02, (3, 500)) + np.array([[0.0], [0.05], [0.02]])
    two = Runs("a", [(0, 0), (1, 0)], np.array([0.8, 0.85]), draws[:2], identical=False)
    assert two.interval_kind == ("test patients only (2 runs: too few to estimate run-to-run spread; run ≥ 3 "
                                 "seeds)")
    low, high = interval(two_level_draws(two))
    assert (low, high) == interval(draws[:2].mean(axis=0)) and high - low < 0.1
    three = Runs("a", [(0, 0), (1, 0), (2, 0)], np.array([0.8, 0.85, 0.82]), draws, identical=False)
    assert three.interval_kind == INTERVAL_ALL


def test_a_choice_made_on_too_few_validation_cases_is_flagged_on_the_job_and_the_page(tmp_path, pneumonia_npz, cli):
    import radbench

    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz),
                                   "limit": {"train": 60, "val": 6}}],
                       [{"knn": {"k": [3, 5]}}, {"knn": {"name": "one_k", "k": [3]}}])
    results = radbench.run(write_study(tmp_path, study))
    details = {row.protocol: row.details for row in results.jobs.itertuples()}
    assert details["knn"]["selection_small_val"].startswith("chosen among 2 candidates on 6 validation case(s)")
    assert "selection_small_val" not in details["one_k"]  # one candidate: nothing was chosen
    assert cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0").exit_code == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "knn (timm:test_vit): hyperparameters chosen on fewer than 10 validation cases" in page

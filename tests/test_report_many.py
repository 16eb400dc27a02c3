"""The report at the size of the shipped studies' figures: 20 backbones x 26 protocol variants. Every figure
renders (markers and colours never run out) and every legend lies whole inside its figure."""

from __future__ import annotations

import pytest

from tests.synthetic_store import protocol_labels, write_store


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    from radbench.report.build import build_report

    out = tmp_path_factory.mktemp("many") / "out"
    write_store(out, backbones=20)
    warnings = []
    page, board = build_report(out, out / "report", resamples=100, patch_images=0, warn=warnings.append)
    return out, page, board, warnings


def test_twenty_backbones_and_26_variants_render_every_figure(many):
    out, page, board, warnings = many
    assert len(protocol_labels()) == 26 and board.backbone.nunique() == 20
    figures = {p.stem for p in (out / "report" / "figures").glob("*.png")}
    assert "cost-synthetic" in figures and "adaptation-synthetic-auroc" in figures
    assert {f"curve-synthetic-{c}-auroc" for c in ("few_shot", "progressive_freezing", "decapitation",
                                                  "decapitated_transformer")} <= figures
    assert len([f for f in figures if f.startswith("leaderboard-")]) == 7
    assert page.read_text().count("<img ") >= len(figures) and not warnings


def _legend_inside(figure) -> bool:
    figure.canvas.draw()
    box, inner = figure.bbox, []
    for legend in [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]:
        extent = legend.get_window_extent()
        inner.append(extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1
                     and extent.y1 <= box.y1 + 1)
    return bool(inner) and all(inner)


def test_every_legend_lies_whole_inside_its_figure(many):
    import numpy as np

    from radbench.report import figures, plots
    from radbench.report.api import load
    from radbench.report.build import _costs

    out, _, board, _ = many
    auroc = board[board.metric == "auroc"]
    points = auroc.merge(_costs(load(out)), on=["backbone", "dataset", "protocol"])
    rng = np.random.default_rng(0)
    runs = [(b, rng.integers(0, 2, 30), rng.random(30)) for b in sorted(board.backbone.unique())]
    curve = figures.curve_points(auroc, "auroc")
    made = {
        "cost": plots.cost_scatter(points, "auroc", "cost"),
        "roc": plots.roc_curves(runs, "roc"),
        "curve": figures.curve_plot(curve[curve.curve == "few_shot"], "synthetic", "few_shot", "auroc"),
        "adaptation": plots.adaptation_bars(auroc[auroc.protocol.isin(plots.FROZEN + plots.TUNED)], "auroc", "a"),
        "ranking": figures.ranking_plot(auroc.assign(dataset=[f"d{i % 2}" for i in range(len(auroc))]), "auroc"),
    }
    outside = [name for name, figure in made.items() if not _legend_inside(figure)]
    assert not outside, outside

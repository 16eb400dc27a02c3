"""The report page: one self-contained HTML file (figures embedded, no network), opening from file://."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radbench.report import figures

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>radbench report — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.worse { color: #888; } img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>radbench report — {{ title }}</h1>
<h2>What this study found</h2>
<ul>{% for line in findings %}<li>{{ line }}</li>{% endfor %}</ul>
<p class="note">Means over seeds; 95 % intervals from {{ resamples }} patient-level bootstrap resamples of the test
split; "significantly worse" is DeLong's test (binary AUROC) or a paired bootstrap against the best backbone,
Holm-corrected within each dataset ×
protocol × metric.</p>
{% if ranking %}<h2>Ranking across datasets</h2><img alt="mean rank" src="data:image/png;base64,{{ ranking }}">{% endif %}
{% if curves %}<h2>Curves</h2>{% for curve in curves %}
<img alt="{{ curve.title }}" src="data:image/png;base64,{{ curve.figure }}">{% endfor %}{% endif %}
{% for section in sections %}
<h2>{{ section.dataset }} / {{ section.protocol }}</h2>
<img alt="{{ section.dataset }} {{ section.protocol }} {{ metric }}" src="data:image/png;base64,{{ section.figure }}">
<table><tr><th>backbone</th><th>rank</th><th>{{ metric }}</th><th>95 % CI</th><th>± std</th><th>seeds</th></tr>
{% for row in section.rows %}<tr class="{{ 'worse' if row.significantly_worse_than_best else '' }}">
<td>{{ row.backbone }}</td><td>{{ row.rank }}</td><td>{{ '%.4f' % row.mean }}</td>
<td>{{ '%.4f' % row.ci_low }} – {{ '%.4f' % row.ci_high }}</td>
<td>{{ '' if row.std != row.std else '%.4f' % row.std }}</td><td>{{ row.n_seeds }}</td></tr>{% endfor %}
</table>{% endfor %}
</body></html>
"""


def findings(board: pd.DataFrame, metric: str) -> list[str]:
    """Best backbone per dataset × protocol, its interval, and whether it beats the runner-up significantly."""
    lines = []
    for (dataset, protocol), rows in board[board.metric == metric].groupby(["dataset", "protocol"]):
        rows = rows.sort_values("rank")
        best = rows.iloc[0]
        line = (f"{dataset} / {protocol}: {best.backbone} {metric} {best['mean']:.4f} "
                f"(95 % CI {best.ci_low:.4f}–{best.ci_high:.4f})")
        if len(rows) > 1:
            runner = rows.iloc[1]
            verdict = "significantly better than" if runner.significantly_worse_than_best else "not significantly " \
                "better than"
            line += f", {verdict} {runner.backbone} ({runner['mean']:.4f})"
        lines.append(line)
    return lines


def write_report(board: pd.DataFrame, folder: Path, title: str, resamples: int, metric: str = "auroc") -> Path:
    from jinja2 import Environment

    figure_folder = folder / "figures"
    sections = []
    for (dataset, protocol), rows in board[board.metric == metric].groupby(["dataset", "protocol"]):
        figure = figures.leaderboard_bars(board, dataset, protocol, metric)
        _, embedded = figures.save(figure, figure_folder, figures.slug(f"leaderboard-{dataset}-{protocol}-{metric}"))
        sections.append({"dataset": dataset, "protocol": protocol, "figure": embedded,
                         "rows": list(rows.sort_values("rank").itertuples())})
    curves = []
    points = figures.curve_points(board, metric)
    for (dataset, curve), rows in points.groupby(["dataset", "curve"]):
        name = figures.slug(f"curve-{dataset}-{curve}-{metric}")
        _, embedded = figures.save(figures.curve_plot(rows, dataset, curve, metric), figure_folder, name)
        curves.append({"title": f"{dataset} / {curve}", "figure": embedded})
    ranking = None
    if board[board.metric == metric].dataset.nunique() > 1:
        _, ranking = figures.save(figures.ranking_plot(board, metric), figure_folder, f"ranking-{metric}")
    html = Environment(autoescape=True).from_string(TEMPLATE).render(
        title=title, findings=findings(board, metric), sections=sections, ranking=ranking, curves=curves,
        metric=metric,
        resamples=resamples)
    path = folder / "index.html"
    path.write_text(html)
    return path

"""The report page: one self-contained HTML file (figures embedded, no network), opening from file://.

A page is a list of sections, each a list of blocks: a figure (embedded PNG), a table, or a line of text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radbench.report import figures

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>radbench report — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
.table-box { overflow-x: auto; max-width: 100%; } /* a wide table scrolls in its own box, never cut */
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.worse { color: #888; } .failed { color: #b00; } img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
figure { margin: 1em 0; } figure.half { display: inline-block; width: 48%; vertical-align: top; margin: 0.5em 0.5%; }
figcaption { color: #555; font-size: 0.85em; }
nav a { margin-right: 1em; } .gallery figure.item { display: inline-block; width: 32%; margin: 0.3%;
 vertical-align: top; } .gallery figure.item img { width: 100%; }
table.sortable th { cursor: pointer; user-select: none; } th.asc::after { content: " ▲"; }
th.desc::after { content: " ▼"; } #filters { position: sticky; top: 0; background: #fff; padding: 0.4em 0;
 border-bottom: 1px solid #ddd; z-index: 1; } #filters label { margin-right: 1em; font-size: 0.9em; }
</style></head><body>
<h1>radbench report — {{ title }}</h1>
<nav>{% for section in sections %}<a href="#{{ section.anchor }}">{{ section.title }}</a>{% endfor %}</nav>
<div id="filters">{% for key in ("backbone", "dataset", "protocol") %}<label>{{ key }}
<select data-key="{{ key }}"><option value="">all</option></select></label>{% endfor %}
<span class="note">click a column header to sort; the filters hide table rows (and other datasets' sections)</span>
</div>
{% for section in sections %}
<section{% if section.dataset %} data-dataset="{{ section.dataset }}"{% endif %}>
<h2 id="{{ section.anchor }}">{{ section.title }}</h2>
{% for block in section.blocks %}
{% if block.kind == "list" %}<ul>{% for line in block.lines %}<li>{{ line }}</li>{% endfor %}</ul>
{% elif block.kind == "text" %}<p class="note">{{ block.text }}</p>
{% elif block.kind == "heading" %}<h3>{{ block.text }}</h3>
{% elif block.kind == "figure" %}<figure class="{{ 'half' if block.half else '' }}"><img alt="{{ block.title }}" src="data:image/png;base64,{{ block.png }}">
{% if block.caption %}<figcaption>{{ block.caption }}</figcaption>{% endif %}</figure>
{% elif block.kind == "gallery" %}<figure class="gallery">{% for image in block.images %}<figure class="item">
<figcaption>{{ image.title }}</figcaption><img alt="{{ image.title }}" title="{{ image.title }}"
 src="data:image/png;base64,{{ image.png }}"></figure>{% endfor %}
<figcaption>{{ block.caption }}</figcaption></figure>
{% elif block.kind == "table" %}<div class="table-box"><table class="sortable"><thead><tr>{% for column in block.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in block.rows %}<tr class="{{ block.row_classes[loop.index0] }}">{% for cell in row %}<td>{{ cell }}</td>
{% endfor %}</tr>{% endfor %}</tbody></table></div>{% endif %}
{% endfor %}</section>{% endfor %}
<script>{{ script }}</script>
</body></html>
"""

# Sorting and filtering in the page itself (no network, no library): a header click sorts its table by that
# column (numbers by their leading value, "0.894 [0.80, 0.97]" as 0.894; text alphabetically; again: reversed);
# the selects keep the rows whose backbone / dataset / protocol cell matches, and the sections of that dataset.
SCRIPT = """
(function () {
  function key(text) {
    var match = /^\\s*[-+\u2212]?\\d*\\.?\\d+(e[-+]?\\d+)?/i.exec(text.replace('\u2212', '-'));
    return match ? parseFloat(match[0].replace('\u2212', '-')) : null;
  }
  function sortBy(table, index, header) {
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var descending = header.classList.contains('asc');
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.classList.remove('asc', 'desc'); });
    header.classList.add(descending ? 'desc' : 'asc');
    rows.sort(function (a, b) {
      var x = a.cells[index].textContent.trim(), y = b.cells[index].textContent.trim();
      var kx = key(x), ky = key(y), order;
      if (kx !== null && ky !== null) { order = kx - ky; }
      else if (kx !== null) { order = -1; } else if (ky !== null) { order = 1; }
      else { order = x.localeCompare(y); }
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.addEventListener('click', function () { sortBy(table, index, header); });
    });
  });
  var selects = document.querySelectorAll('#filters select'), seen = {};
  function columnOf(table, name) {
    var cells = table.tHead.rows[0].cells;
    for (var i = 0; i < cells.length; i++) { if (cells[i].textContent.trim() === name) { return i; } }
    return -1;
  }
  Array.prototype.forEach.call(selects, function (select) {
    var name = select.dataset.key, values = {};
    Array.prototype.forEach.call(tables, function (table) {
      var index = columnOf(table, name);
      if (index < 0) { return; }
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) { values[row.cells[index].textContent.trim()] = 1; });
    });
    Object.keys(values).sort().forEach(function (value) {
      var option = document.createElement('option'); option.value = value; option.textContent = value;
      select.appendChild(option);
    });
    select.addEventListener('change', apply);
  });
  function apply() {
    var wanted = {};
    Array.prototype.forEach.call(selects, function (select) { wanted[select.dataset.key] = select.value; });
    Array.prototype.forEach.call(tables, function (table) {
      var indices = {};
      Object.keys(wanted).forEach(function (name) { indices[name] = columnOf(table, name); });
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var keep = Object.keys(wanted).every(function (name) {
          return !wanted[name] || indices[name] < 0 || row.cells[indices[name]].textContent.trim() === wanted[name];
        });
        row.style.display = keep ? '' : 'none';
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll('section[data-dataset]'), function (section) {
      section.style.display = !wanted.dataset || section.dataset.dataset === wanted.dataset ? '' : 'none';
    });
  }
  window.radbenchFilter = function (name, value) {
    Array.prototype.forEach.call(selects, function (select) { if (select.dataset.key === name) { select.value = value; } });
    apply();
  };
})();
"""


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[dict] = field(default_factory=list)
    dataset: str | None = None  # a dataset's own section: hidden when the page is filtered to another dataset

    def text(self, text: str) -> None:
        self.blocks.append({"kind": "text", "text": text})

    def heading(self, text: str) -> None:
        self.blocks.append({"kind": "heading", "text": text})

    def lines(self, lines: list[str]) -> None:
        if lines:
            self.blocks.append({"kind": "list", "lines": lines})

    def table(self, columns: list[str], rows: list[list], row_classes: list[str] | None = None) -> None:
        self.blocks.append({"kind": "table", "columns": columns, "rows": rows,
                            "row_classes": row_classes or [""] * len(rows)})


class Page:
    """Collects sections; every figure is written to figures/ as PNG and SVG and embedded as PNG."""

    def __init__(self, folder: Path, title: str):
        self.folder, self.title = folder, title
        self.sections: list[Section] = []

    def section(self, title: str, dataset: str | None = None) -> Section:
        section = Section(title, figures.slug(title) or f"section-{len(self.sections)}", dataset=dataset)
        self.sections.append(section)
        return section

    def figure(self, section: Section, figure, name: str, title: str, caption: str = "", half: bool = False) -> None:
        """`half`: shown two to a row (small figures of one kind, e.g. a leaderboard per protocol)."""
        _, png = figures.save(figure, self.folder / "figures", figures.slug(name))
        section.blocks.append({"kind": "figure", "title": title, "png": png, "caption": caption, "half": half})

    def write(self) -> Path:
        from jinja2 import Environment
        from markupsafe import Markup

        html = Environment(autoescape=True).from_string(TEMPLATE).render(title=self.title, sections=self.sections,
                                                                           script=Markup(SCRIPT))
        path = self.folder / "index.html"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
        return path


def findings(board: pd.DataFrame, metrics: dict[str, str]) -> list[str]:
    """Best backbone per dataset × protocol (on the dataset's headline metric), its interval, and whether it beats
    the runner-up significantly."""
    lines = []
    for (dataset, protocol), rows in board.groupby(["dataset", "protocol"]):
        metric = metrics.get(dataset)
        rows = rows[rows.metric == metric].sort_values("rank")
        if rows.empty:
            continue
        best = rows.iloc[0]
        line = (f"{dataset} / {protocol}: {best.backbone} {metric} {best['mean']:.4f} "
                f"(95 % CI {best.ci_low:.4f}–{best.ci_high:.4f} over {best.interval}; {best.runs} run(s), "
                f"{int(best.test_size)} test patients)")
        if bool(best.get("contains_chance", False)):
            line += "; its interval contains 0.5: indistinguishable from chance"
        if len(rows) > 1:
            runner = rows.iloc[1]
            if str(runner.verdict).startswith("test set too small"):
                line += f"; no comparison with {runner.backbone}: {runner.verdict.removeprefix('test set ')}"
            elif runner.verdict == "too few runs to tell":
                line += (f"; too few runs to tell it from {runner.backbone} ({runner['mean']:.4f}): their runs differ, "
                         "and a verdict needs 3 or more per backbone")
            else:
                verdict = "significantly better than" if runner.significantly_worse_than_best else \
                    "not significantly better than"
                line += f", {verdict} {runner.backbone} ({runner['mean']:.4f}; {runner.test}"
                line += "" if pd.isna(runner.p_best_better) else f", better in {100 * runner.p_best_better:.0f} % " \
                    "of paired runs"
                line += ")"
        lines.append(line)
    return lines

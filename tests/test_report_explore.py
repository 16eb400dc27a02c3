"""The report page sorts and filters in the browser itself (no network): headless Chromium clicks a header and sets
the filters through the page's own script, and the DOM it leaves is read back."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.browser import FLAGS, chromium

ROWS = [["vit_b", "nih", "knn", "0.812 [0.780, 0.840]"], ["vit_s", "nih", "knn", "0.9 [0.88, 0.92]"],
        ["resnet", "nih", "linear", "–"], ["vit_b", "chexpert", "knn", "0.7005 [0.65, 0.75]"],
        ["vit_s", "chexpert", "linear", "−0.05 [−0.1, 0.0]"], ["resnet", "chexpert", "knn", "1e-3"]]

PROBE = """<script>
function cells(table, index) {
  return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[index].textContent.trim(); });
}
function visible(table) {
  return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return r.style.display !== 'none'; })
    .map(function (r) { return r.cells[0].textContent.trim() + '/' + r.cells[1].textContent.trim(); });
}
var table = document.querySelector('table.sortable');
var header = table.tHead.rows[0].cells[3];
header.click();
document.body.dataset.ascending = cells(table, 3).join('|');
header.click();
document.body.dataset.descending = cells(table, 3).join('|');
table.tHead.rows[0].cells[0].click();
document.body.dataset.names = cells(table, 0).join('|');
window.radbenchFilter('backbone', 'vit_s');
document.body.dataset.backbone = visible(table).join('|');
window.radbenchFilter('dataset', 'nih');
document.body.dataset.both = visible(table).join('|');
document.body.dataset.sections = Array.prototype.map.call(document.querySelectorAll('section[data-dataset]'),
  function (s) { return s.dataset.dataset + ':' + (s.style.display === 'none' ? 'hidden' : 'shown'); }).join('|');
document.body.dataset.options = Array.prototype.map.call(document.querySelectorAll('#filters select[data-key="protocol"] option'),
  function (o) { return o.value; }).join('|');
</script></body>"""


def test_tables_sort_and_filter_in_the_page(tmp_path):
    if chromium() is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    from radbench.report.html import Page

    page = Page(tmp_path / "report", "explore")
    page.section("Leaderboard").table(["backbone", "dataset", "protocol", "AUROC"], ROWS)
    page.section("Dataset nih", dataset="nih").text("nih only")
    page.section("Dataset chexpert", dataset="chexpert").text("chexpert only")
    path = page.write()
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text().replace("</body>", PROBE))
    dom = subprocess.run([chromium(), *FLAGS, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    read = {key: re.search(f'data-{key}="([^"]*)"', dom.stdout).group(1) for key in
            ("ascending", "descending", "names", "backbone", "both", "sections", "options")}
    # numbers by their leading value (a minus sign, exponents), text after them
    assert read["ascending"].split("|") == ["−0.05 [−0.1, 0.0]", "1e-3", "0.7005 [0.65, 0.75]",
                                            "0.812 [0.780, 0.840]", "0.9 [0.88, 0.92]", "–"]
    assert read["descending"].split("|") == read["ascending"].split("|")[::-1]
    assert read["names"].split("|") == ["resnet", "resnet", "vit_b", "vit_b", "vit_s", "vit_s"]
    assert sorted(read["backbone"].split("|")) == ["vit_s/chexpert", "vit_s/nih"]
    assert read["both"] == "vit_s/nih"
    assert read["sections"] == "nih:shown|chexpert:hidden"
    assert read["options"] == "|knn|linear"

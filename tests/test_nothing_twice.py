"""Nothing lost, nothing twice, on the store's side: content (not the clock) decides whether data changed; a
re-keyed job never sits beside its twin; a cleared failure leaves status; reading commands never write to a
store they did not create; a populated read-only cache serves a run."""

from __future__ import annotations

import os
import sqlite3
import time

import pandas as pd

from radbench.results import ResultsStore
from tests.conftest import tiny_study, write_study
from tests.test_bad_inputs import csv_dataset, nih_csv


def _csv_study(tmp_path, nih_labels):
    labels = nih_csv(tmp_path, nih_labels)
    study = tiny_study(tmp_path, [csv_dataset(labels, split_seed=1)], [{"knn": {"k": [3]}}], seeds=[0, 1])
    return labels, write_study(tmp_path, study)


def _rows(cli, out):
    from io import StringIO

    result = cli("results", out, "--csv")
    assert result.exit_code == 0, result.stderr
    return pd.read_csv(StringIO(result.stdout))


def test_a_touched_label_file_recomputes_nothing_and_an_edited_one_replaces_its_twins(tmp_path, nih_labels, cli):
    labels, study = _csv_study(tmp_path, nih_labels)
    assert cli("run", study).exit_code == 0
    out = tmp_path / "out"
    first = _rows(cli, out)
    later = time.time() + 3600
    os.utime(labels, (later, later))  # `touch`: same bytes, new time
    again = cli("run", study)
    assert again.exit_code == 0 and "0 run" in " ".join(again.stderr.split()), again.stderr
    assert _rows(cli, out).equals(first)

    table = pd.read_csv(labels)  # a real edit: one label corrected
    table.loc[0, "Effusion"] = 1 - table.loc[0, "Effusion"]
    table.to_csv(labels, index=False)
    assert cli("run", study).exit_code == 0
    with sqlite3.connect(out / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (4,)  # both kept in the file
    rows = _rows(cli, out)
    keys = ["backbone", "dataset", "protocol", "seed", "repeat", "metric"]
    assert not rows.duplicated(keys).any() and len(rows) == len(first)  # the tables show the newer jobs only
    assert set(rows.job).isdisjoint(first.job)
    assert len(ResultsStore(out / "results.sqlite").jobs()) == 2

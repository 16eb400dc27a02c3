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


def _read_only(folder, *command):
    """`command` with `folder` bind-mounted read-only (a private mount namespace: nothing else sees it)."""
    import shlex
    import shutil
    import subprocess
    import sys

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount a folder read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    f = shlex.quote(str(folder))
    script = (f"mount --bind {f} {f} && mount -o remount,bind,ro {f} && "
              f"{shlex.quote(sys.executable)} -m radbench {' '.join(shlex.quote(str(c)) for c in command)}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def test_a_populated_read_only_cache_dir_serves_a_run(tmp_path, pneumonia_npz, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    raw = tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}], cache_dir=str(tmp_path / "cache"))
    study = write_study(tmp_path, raw)
    assert cli("run", study).exit_code == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*"))
    other = write_study(tmp_path, {**raw, "output_dir": str(tmp_path / "second")}, "second.yaml")
    done = _read_only(tmp_path / "cache", "run", other)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "cannot be written" in said and "extracted features for 0 images" in said, said
    assert len(ResultsStore(tmp_path / "second" / "results.sqlite").jobs()) == 1
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*")) == before
    # an empty read-only cache cannot serve anything: refused at the start, in one line
    (tmp_path / "empty").mkdir()
    empty = write_study(tmp_path, {**raw, "output_dir": str(tmp_path / "third"), "cache_dir": str(tmp_path / "empty")},
                        "third.yaml")
    refused = _read_only(tmp_path / "empty", "run", empty)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "cannot write (read-only file system)" in " ".join(refused.stderr.split()), refused.stderr


def test_reading_commands_refuse_a_foreign_store_and_leave_it_unchanged(tmp_path, pneumonia_npz, cli):
    foreign = tmp_path / "other" / "results.sqlite"
    foreign.parent.mkdir()
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO patients VALUES (1, 'x')")
    before = foreign.read_bytes()
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}],
                                             output_dir=str(foreign.parent)))
    for args in (("report", foreign.parent), ("results", foreign.parent), ("status", foreign.parent),
                 ("run", study)):
        result = cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "not a radbench results store" in " ".join(result.stderr.split()), (args, result.stderr)
    assert foreign.read_bytes() == before and sorted(p.name for p in foreign.parent.iterdir()) == ["results.sqlite"]


def test_a_report_leaves_out_unusable_predictions_and_refuses_when_none_is_left(tmp_path, pneumonia_npz, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}], seeds=[0, 1, 2]))
    assert cli("run", study).exit_code == 0
    out = tmp_path / "out"
    with sqlite3.connect(out / "results.sqlite") as conn:
        gone, torn, kept = [row[0] for row in conn.execute("SELECT key FROM jobs ORDER BY seed")]
        conn.execute("DELETE FROM predictions WHERE job_key = ?", (gone,))
        conn.execute("UPDATE predictions SET scores = substr(scores, 1, 100) WHERE job_key = ?", (torn,))
    result = cli("report", out, "--resamples", "100", "--patch-images", "0")
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0 and "2 of 3 jobs left out of the report" in said, result.stderr
    assert gone in said and torn in said and "predictions damaged" in said
    assert (out / "report" / "index.html").is_file()
    with sqlite3.connect(out / "results.sqlite") as conn:
        conn.execute("DELETE FROM predictions WHERE job_key = ?", (kept,))
    result = cli("report", out, "--resamples", "100", "--patch-images", "0")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "none of the 3 stored jobs has usable test predictions" in " ".join(result.stderr.split())

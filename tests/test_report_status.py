"""A partial study: the store keeps what was planned and what failed, so that the report shows missing and failed
jobs; a rerun clears the failure once the job is stored."""

from __future__ import annotations

import pytest

import radbench
from radbench.errors import RadbenchError
from tests.conftest import tiny_study, write_study


def test_a_failed_job_and_an_unreached_unit_are_in_the_status(tmp_path, pneumonia_npz, monkeypatch, cli):
    import radbench.runner as runner
    from radbench.config import load_study
    from radbench.progress import Reporter

    breast = pneumonia_npz.parent / "breastmnist_resaved.npz"
    study = write_study(tmp_path, tiny_study(tmp_path, [
        {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60},
        {"name": "b", "adapter": "medmnist", "path": str(breast), "limit": 60}], [{"knn": {"k": [5]}}], seeds=[0, 1]))
    real = runner.run_job

    def failing(study, job, *args, **kwargs):
        if job.seed == 1:
            raise FloatingPointError("loss is NaN at step 3")
        return real(study, job, *args, **kwargs)

    monkeypatch.setattr(runner, "run_job", failing)
    with pytest.raises(RadbenchError, match="timm:test_vit x p / knn .seed 1. failed .*FloatingPointError: loss is NaN"):
        runner.run_study(load_study(study), Reporter(quiet=True), fail_fast=True)
    status = radbench.load(tmp_path / "out").status.set_index("dataset")
    assert status.loc["p", ["protocol", "planned", "done", "failed"]].tolist() == ["knn", 2, 1, 1]
    assert status.loc["p", "error"] == "FloatingPointError: loss is NaN at step 3"
    assert status.loc["b", ["protocol", "planned", "done"]].tolist() == ["", 0, 0]  # never reached

    shown = " ".join(cli("status", tmp_path / "out").stdout.split())
    assert "FloatingPointError: loss is NaN at step 3" in shown and "not reached" in shown
    assert "jobs: 1 stored, 0 running, 1 failed, 0 pending of 2 planned; units not reached: 1" in shown

    assert cli("report", tmp_path / "out", "--resamples", "100").exit_code == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "1 of 2 planned jobs stored" in page and "1 failed" in page and "not reached" in page
    assert "FloatingPointError: loss is NaN at step 3" in page and ">nan<" not in page

    monkeypatch.setattr(runner, "run_job", real)
    runner.run_study(load_study(study), Reporter(quiet=True))
    status = radbench.load(tmp_path / "out").status
    assert status.planned.tolist() == [2, 2] and status.done.tolist() == [2, 2] and status.failed.sum() == 0


def test_status_counts_running_jobs_where_a_live_process_holds_them(tmp_path, cli):
    import os
    import socket

    from radbench.results import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    store.plan_units("s", [("vit", "d")])
    store.plan_jobs("vit", "d", [("k1", "knn", 0, 0), ("k2", "knn", 1, 0), ("k3", "knn", 2, 0)])
    assert store.claim("k2")
    row = store.status().iloc[0]
    assert (row.planned, row.done, row.failed, row.running, row.pending) == (3, 0, 0, 1, 2)
    assert row.held_by == f"{socket.gethostname()}:{os.getpid()}"
    shown = " ".join(cli("status", tmp_path).stdout.split())
    assert "jobs: 0 stored, 1 running, 0 failed, 2 pending of 3 planned" in shown
    store.release("k2")
    assert store.status().iloc[0].running == 0

"""kill -9 in the middle of a run leaves a consistent store; a rerun finishes with the same numbers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd

from tests.conftest import tiny_study, write_study


def resume_study(tmp_path, pneumonia_npz, output):
    datasets = [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 200}]
    protocols = [{"knn": {"k": [5, 20]}}, {"linear": {"epochs": 40, "lr": [0.001, 0.01, 0.1]}},
                 {"logreg": {"C": [0.01, 0.1, 1.0, 10.0]}}]
    study = tiny_study(tmp_path, datasets, protocols, seeds=[0, 1, 2], output_dir=str(output),
                       cache_dir=str(tmp_path / "cache"))
    return write_study(tmp_path, study, f"{output.name}.yaml")


def radbench(*args):
    return [sys.executable, "-m", "radbench", *map(str, args)]


def job_count(database):
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def training_claimed(database) -> bool:
    """The first job is stored and a second job is claimed (being computed) by the running process."""
    if job_count(database) < 1:
        return False
    try:
        with sqlite3.connect(database, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM claims WHERE key NOT LIKE 'unit:%'").fetchone()[0] == 1
    except sqlite3.OperationalError:
        return False


def final_metrics(output):
    """Every stored number except the measured costs (times and memory differ from run to run)."""
    from radbench.results.tables import COST_METRICS

    with sqlite3.connect(output / "results.sqlite") as conn:
        frame = pd.read_sql_query(
            "SELECT j.backbone, j.dataset, j.protocol, j.seed, m.split, m.name, m.value FROM metrics m "
            "JOIN jobs j ON j.key = m.job_key ORDER BY 1, 2, 3, 4, 5, 6", conn)
    return frame[~frame["name"].isin(COST_METRICS)].reset_index(drop=True)


def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, pneumonia_npz):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    interrupted = tmp_path / "interrupted"
    study = resume_study(tmp_path, pneumonia_npz, interrupted)
    process = subprocess.Popen(radbench("run", study, "--quiet"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    database = interrupted / "results.sqlite"
    deadline = time.time() + 120
    while job_count(database) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = job_count(database)
    assert 2 <= done < 9

    with sqlite3.connect(database) as conn:  # every stored job is whole: metrics and predictions present
        orphans = conn.execute(
            "SELECT COUNT(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.job_key = j.key) "
            "OR NOT EXISTS (SELECT 1 FROM metrics m WHERE m.job_key = j.key AND m.split = 'test')").fetchone()[0]
        loose = conn.execute("SELECT COUNT(*) FROM metrics WHERE job_key NOT IN (SELECT key FROM jobs)").fetchone()[0]
    assert orphans == 0 and loose == 0

    rerun = subprocess.run(radbench("run", study, "--quiet"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"jobs: {9 - done} run, {done} already done" in rerun.stderr

    uninterrupted = tmp_path / "uninterrupted"
    reference = subprocess.run(radbench("run", resume_study(tmp_path, pneumonia_npz, uninterrupted), "--quiet"),
                               env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    pd.testing.assert_frame_equal(final_metrics(interrupted), final_metrics(uninterrupted))
    assert len(final_metrics(uninterrupted).query("split == 'test' and name == 'auroc'")) == 9


def test_killed_fine_tuning_restarts_cleanly(tmp_path, pneumonia_npz):
    """A kill in the middle of training a job leaves no row of it; the rerun trains it again from scratch and
    ends with the numbers of a run that was never interrupted, each job stored once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def study(output):
        datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 96}]
        protocols = [{"bitfit": {"epochs": 3, "lr": [1e-3]}}, {"finetune": {"epochs": 15, "lr": [1e-4]}}]
        raw = tiny_study(tmp_path, datasets, protocols, output_dir=str(output), cache_dir=str(tmp_path / "cache"))
        return write_study(tmp_path, raw, f"{output.name}.yaml")

    interrupted = tmp_path / "killed"
    process = subprocess.Popen(radbench("run", study(interrupted), "--quiet"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not training_claimed(interrupted / "results.sqlite") and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    # one job stored and the next one claimed: the process is inside the 15-epoch fine-tuning job now
    assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert job_count(interrupted / "results.sqlite") == 1
    rerun = subprocess.run(radbench("run", study(interrupted), "--quiet"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "jobs: 1 run, 1 already done" in rerun.stderr
    reference = tmp_path / "reference"
    done = subprocess.run(radbench("run", study(reference), "--quiet"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(interrupted / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT protocol) FROM jobs").fetchone() == (2, 2)
    pd.testing.assert_frame_equal(final_metrics(interrupted), final_metrics(reference))

"""`--track mlflow[:URI]` against a real MLflow tracking server started here on localhost: every stored job is an
MLflow run with its params and metrics, read back through MLflow's client; a rerun logs nothing twice; the report
is an artifact; an unreachable server is one line before any model is built."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import tiny_study, write_study

pytest.importorskip("mlflow", reason="radbench[mlflow] (in radbench[dev]) is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'db.sqlite'}", "--artifacts-destination",
               str(folder / "artifacts")]
    # its own session: the server's workers (uvicorn, job consumers) are stopped with it, as one process group
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w"),
                               start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail("mlflow server exited: " + (folder / "log").read_text()[-2000:])
            time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("mlflow server did not answer within 120 s")
    yield uri
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _stored(out: Path) -> dict:
    with sqlite3.connect(out / "results.sqlite") as conn:
        jobs = {key: (protocol, json.loads(selected)) for key, protocol, selected in
                conn.execute("SELECT key, protocol, selected FROM jobs")}
        metrics = {(key, f"{split}_{name}"): value for key, split, name, value in
                   conn.execute("SELECT job_key, split, name, value FROM metrics")}
    return {"jobs": jobs, "metrics": metrics}


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


def test_jobs_are_logged_once_and_the_report_is_an_artifact(tmp_path, shared_data, server, cli):
    study = tiny_study(tmp_path, [{"name": "pneumonia", "adapter": "medmnist", "limit": 40,
                                   "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}],
                       [{"knn": {"k": [5, 10]}}, {"logreg": {"C": [0.1, 1.0]}}])
    path = write_study(tmp_path, study)
    first = cli("run", path, "--track", f"mlflow:{server}")
    assert first.exit_code == 0 and "tracking: 2 job(s) logged" in first.output, first.output
    stored = _stored(tmp_path / "out")
    client, runs = _runs(server, "test")
    jobs = [r for r in runs if r.data.tags.get("radbench.kind") == "job"]
    assert sorted(r.data.tags["radbench.job_key"] for r in jobs) == sorted(stored["jobs"])
    for run in jobs:
        key = run.data.tags["radbench.job_key"]
        protocol, selected = stored["jobs"][key]
        assert run.data.params["protocol"] == protocol and run.data.params["backbone"] == "timm:test_vit"
        assert run.data.params["dataset"] == "pneumonia" and run.data.tags["radbench.study"] == "test"
        for name, value in selected.items():
            assert run.data.params[f"selected.{name}"] == str(value)
        assert run.data.metrics["test_auroc"] == pytest.approx(stored["metrics"][(key, "test_auroc")], abs=1e-12)
        assert run.data.metrics["val_auroc"] == pytest.approx(stored["metrics"][(key, "val_auroc")], abs=1e-12)
        assert "test_infer_ms_per_image" in run.data.metrics and "identity" not in run.data.params
        assert "timm" in run.data.params["weights"]
    again = cli("run", path, "--track", f"mlflow:{server}")
    assert again.exit_code == 0 and "tracking: 0 job(s) logged" in again.output
    report = cli("report", tmp_path / "out", "--resamples", "100", "--track", f"mlflow:{server}")
    assert report.exit_code == 0, report.output
    client, runs = _runs(server, "test")
    assert len([r for r in runs if r.data.tags.get("radbench.kind") == "job"]) == 2  # nothing logged twice
    (page_run,) = [r for r in runs if r.data.tags.get("radbench.kind") == "report"]
    assert {a.path for a in client.list_artifacts(page_run.info.run_id)} >= {"index.html", "tables"}


def test_unreachable_server_is_one_line_or_a_warning(tmp_path, shared_data, cli):
    study = tiny_study(tmp_path, [{"name": "pneumonia", "adapter": "medmnist", "limit": 20,
                                   "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}],
                       [{"knn": {"k": [5]}}])
    path = write_study(tmp_path, study)
    closed = f"mlflow:http://127.0.0.1:{_free_port()}"
    refused = cli("run", path, "--track", closed)
    assert refused.exit_code == 2 and "cannot be reached" in refused.output and "--track-optional" in refused.output
    assert "building backbone" not in refused.output and not (tmp_path / "out" / "results.sqlite").exists()
    assert cli("run", path, "--track", "wandb").exit_code == 2
    optional = cli("run", path, "--track", closed, "--track-optional")
    assert optional.exit_code == 0 and "running without tracking" in optional.output
    local = cli("run", path, "--track", "mlflow")  # the default: a local store in OUT/mlruns
    assert local.exit_code == 0 and "tracking: 1 job(s) logged" in local.output, local.output
    _, runs = _runs(f"sqlite:///{tmp_path / 'out' / 'mlruns' / 'mlflow.db'}", "test")
    assert len(runs) == 1

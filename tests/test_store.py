"""The results store: a damaged file is one line for `run` and `results`; processes sharing an output_dir split
the work through claims, and no job is computed (or stored) twice."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from radbench.results import ResultsStore
from tests.conftest import tiny_study, write_study


def _study(tmp_path, pneumonia_npz, **settings):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    return write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}], **settings))


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_damaged_store_is_one_line_for_run_and_results(tmp_path, pneumonia_npz, cli, damage):
    study = _study(tmp_path, pneumonia_npz, seeds=[0, 1, 2, 3])
    assert cli("run", study).exit_code == 0
    database = tmp_path / "out" / "results.sqlite"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = database.read_bytes()
    if damage == "random bytes":
        database.write_bytes(os.urandom(len(data)))
    else:
        database.write_bytes(data[: len(data) // 2])
    for args in (("run", study), ("results", tmp_path / "out"), ("results", tmp_path / "out", "--csv")):
        result = cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert str(database) in line and "move it aside" in line, line


def test_claims_keep_jobs_apart(tmp_path):
    first, second = ResultsStore(tmp_path / "r.sqlite"), ResultsStore(tmp_path / "r.sqlite")
    assert first.claim("job-a") and first.claim("job-a")  # a claim is held again by its owner
    assert not second.claim("job-a") and second.claimed_elsewhere("job-a")  # live owner (this very process)
    first.release("job-a")
    assert second.claim("job-a")
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:  # a claim whose process is gone is taken over
        conn.execute("UPDATE claims SET pid = 999999999, owner = 'gone' WHERE key = 'job-a'")
    assert first.claim("job-a")
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:  # another machine's claim: alive while it beats
        conn.execute("UPDATE claims SET host = 'elsewhere', owner = 'far', heartbeat = ? WHERE key = 'job-a'",
                     (time.time(),))
    assert not second.claim("job-a")
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        conn.execute("UPDATE claims SET heartbeat = ? WHERE key = 'job-a'", (time.time() - 3600,))
    assert second.claim("job-a")


def test_a_stored_job_is_never_claimed_or_overwritten(tmp_path, pneumonia_npz):
    from radbench.config import load_study
    from radbench.progress import Reporter
    from radbench.runner import run_study

    run_study(load_study(_study(tmp_path, pneumonia_npz)), Reporter(quiet=True))
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    (key,) = store.jobs().key
    assert not store.claim(key)


def test_two_processes_split_the_work_and_compute_nothing_twice(tmp_path, pneumonia_npz):
    datasets = [{"name": "a", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 150},
                {"name": "b", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 120}]
    protocols = [{"linear": {"epochs": 200, "lr": [0.001, 0.01, 0.1]}}, {"knn": {"k": [5, 10]}}]
    seeds = list(range(6))
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, protocols, seeds=seeds))
    command = [sys.executable, "-m", "radbench", "run", str(study), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # started together: one prepares dataset a while the other prepares b, then both take jobs as they come
    first, second = (subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    database = tmp_path / "out" / "results.sqlite"
    outputs = [process.communicate(timeout=600)[1] for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    total = 2 * len(protocols) * len(seeds)
    runs = [int(re.search(r"jobs:\s+(\d+)\s+run", output).group(1)) for output in outputs]
    assert sum(runs) == total, outputs  # every job computed once, by one of the two
    assert min(runs) > 0, outputs  # and the two really shared the work
    extracted = [int(m.group(1)) if (m := re.search(r"extracted features for\s+(\d+)\s+images", o)) else 0
                 for o in outputs]
    manifests = [json.loads(path.read_text()) for path in (tmp_path / "out" / "features").glob("*/manifest.json")]
    assert len(manifests) == 2  # one extraction per dataset, by whichever process claimed it
    assert sum(extracted) == sum(split["n"] for m in manifests for split in m["splits"].values()), outputs
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM jobs").fetchone() == (total, total)
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone() == (0,)




_OPEN_TOGETHER = """
import sys, time
from pathlib import Path
from radbench.results import ResultsStore
for trial in range(int(sys.argv[3])):
    time.sleep(max(0.0, float(sys.argv[2]) + 0.3 * trial - time.time()))
    ResultsStore(Path(sys.argv[1]) / str(trial) / "results.sqlite").claim("unit")
"""


def test_processes_creating_one_new_store_together_all_open_it(tmp_path):
    # SQLite answers "locked" at once (no busy wait) to processes switching one new file to WAL together:
    # two `radbench run` started at the same moment on a fresh output_dir must both get through
    trials, start = 8, time.time() + 1.5  # after every interpreter has imported radbench
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_TOGETHER, str(tmp_path), str(start), str(trials)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert all(process.returncode == 0 for process in processes), errors
    for trial in range(trials):
        with sqlite3.connect(tmp_path / str(trial) / "results.sqlite") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("SELECT COUNT(*) FROM claims").fetchone() == (1,)

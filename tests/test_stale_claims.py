"""A claim is alive only while its process beats: a claim on this host whose pid now belongs to another, live
process (pids are reused after a restart; in a container pid 1 always exists) is taken over once its heartbeat
is stale, and `radbench status` shows it as stale, not running."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from radbench.results import ResultsStore
from radbench.results.plan_records import STALE_SECONDS
from tests.conftest import tiny_study, write_study

THREE_DAYS = 3 * 86400


@pytest.fixture
def unrelated_process():
    """A live process of this host that has nothing to do with radbench."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def _plant_claim(database, key: str, pid: int, age: float) -> None:
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)",
                     (key, "killed-run", socket.gethostname(), pid, time.time() - age))


def test_stale_claims_of_a_reused_pid_are_taken_over(tmp_path, pneumonia_npz, unrelated_process, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}], seeds=[0, 1]))
    assert cli("run", study).exit_code == 0
    database = tmp_path / "out" / "results.sqlite"
    with sqlite3.connect(database) as conn:  # as if the run had been killed before storing any job
        keys = [row[0] for row in conn.execute("SELECT key FROM jobs ORDER BY key")]
        for table, column in (("metrics", "job_key"), ("predictions", "job_key"), ("jobs", "key")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({','.join('?' * len(keys))})", keys)
    assert len(keys) == 2
    # the killed run's claims: this host, a pid now held by a live unrelated process, heartbeat three days old
    _plant_claim(database, "unit:timm:test_vit|p", unrelated_process, THREE_DAYS)
    _plant_claim(database, keys[0], unrelated_process, THREE_DAYS)

    shown = " ".join(cli("status", tmp_path / "out").stdout.split())
    assert "0 running" in shown and "1 stale claim(s)" in shown, shown
    assert f"{socket.gethostname()}:{unrelated_process}, heartbeat 3.0 d ago" in shown, shown
    row = ResultsStore(database).status().iloc[0]
    assert (row.running, row.stale, row.pending) == (0, 1, 2)

    # in a process of its own, so that a run waiting forever (the old rule) fails the test instead of hanging it
    process = subprocess.run([sys.executable, "-m", "radbench", "run", str(study)], capture_output=True, text=True,
                             timeout=240)
    assert process.returncode == 0, process.stderr
    with sqlite3.connect(database) as conn:
        stored = [row[0] for row in conn.execute("SELECT key FROM jobs ORDER BY key")]
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone() == (0,)
    assert stored == keys  # every job stored once


_HOLD = """
import sys, time
from radbench.results import ResultsStore
store = ResultsStore(sys.argv[1])
with store.heartbeat():
    assert store.claim("unit:vit|d") and store.claim("job-1")
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_live_claim_with_a_fresh_heartbeat_still_blocks(tmp_path, unrelated_process):
    database = tmp_path / "results.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(database)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        store = ResultsStore(database)
        for key in ("unit:vit|d", "job-1"):  # another live process, beating: not taken
            assert not store.claim(key)
            assert store.claim_holder(key).startswith(f"{socket.gethostname()}:{holder.pid}, heartbeat ")
        # a live pid of this host with a fresh heartbeat blocks too (the pid rule alone still holds)
        _plant_claim(database, "job-2", unrelated_process, STALE_SECONDS / 2)
        assert not store.claim("job-2")
        # ... and a stale heartbeat on another host is taken over, as before
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE claims SET host = 'elsewhere', heartbeat = ? WHERE key = 'job-2'",
                         (time.time() - STALE_SECONDS - 1,))
        assert store.claim("job-2")
    finally:
        holder.kill()
        holder.wait()
    # the holder killed: its claims (same host, pid gone) are taken over at once, heartbeat fresh or not
    assert ResultsStore(database).claim("unit:vit|d") and ResultsStore(database).claim("job-1")
    assert os.path.exists(database)

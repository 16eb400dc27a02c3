"""Fuzz of the newest surfaces (issue 39): tracking URIs, hostile study files, the report's statistics cache,
prediction blobs, shared read-only results, the Python API, the feature cache's binding to its split, full disks.
Every case ends in one `error:` line and exit 2 with nothing stored, or in the correct result (a cache entry
dropped and recomputed, a damaged job named in one warning and left out, a read-only folder reported)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, run_cli, tiny_study, write_study

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


@pytest.fixture(scope="module")
def done(tmp_path_factory, shared_data):
    """A finished tiny study (3 seeds of kNN and a linear probe) with a report, so its statistics are cached."""
    root = tmp_path_factory.mktemp("promises")
    datasets = [{"name": "p", "adapter": "medmnist", "limit": 40,
                 "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}]
    study = write_study(root, tiny_study(root, datasets, [{"knn": {"k": [3]}}, {"linear": {"epochs": 2, "lr": [0.01]}}],
                                         seeds=[0, 1, 2]))
    run_cli("run", study, "--quiet")
    run_cli("report", root / "out", "--resamples", "100", "--patch-images", "0")
    shutil.rmtree(root / "out" / "report")
    with sqlite3.connect(root / "out" / "results.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert conn.execute("SELECT COUNT(*) FROM stat_cache").fetchone()[0] == 12
    return {"root": root, "out": root / "out", "study": study, "npz": datasets[0]["path"]}


def copy_of(fx, tmp) -> Path:
    out = tmp / "out"
    shutil.copytree(fx["out"], out)
    return out


def sql(out: Path, *statements, params=()):
    with sqlite3.connect(out / "results.sqlite") as conn:
        for statement in statements:
            conn.execute(statement, params) if "?" in statement else conn.execute(statement)
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def first_job(out: Path, protocol: str = "linear") -> str:
    with sqlite3.connect(out / "results.sqlite") as conn:
        return conn.execute("SELECT key FROM jobs WHERE protocol = ? ORDER BY seed", (protocol,)).fetchone()[0]


def nan_scores(out: Path) -> bytes:
    """The first linear job's scores blob, same length, every float32 a NaN (what random bytes sometimes decode to)."""
    import numpy as np

    with sqlite3.connect(out / "results.sqlite") as conn:
        size = conn.execute("SELECT length(scores) FROM predictions WHERE job_key = ?",
                            (first_job(out),)).fetchone()[0]
    return np.full(size // 4, np.nan, dtype=np.float32).tobytes()


# -- setups: (fx, tmp) -> argv -----------------------------------------------------------------------------------

def track(uri, command="run", prepare=None):
    def setup(fx, tmp):
        if prepare is not None:
            prepare(tmp)
        if command == "report":
            return ["report", copy_of(fx, tmp), "--resamples", "100", "--patch-images", "0", "--track", uri]
        raw = yaml.safe_load(Path(fx["study"]).read_text())
        raw["output_dir"] = str(tmp / "tracked")
        return ["run", write_study(tmp, raw), "--track", uri.replace("TMP", str(tmp))]
    return setup


def study_text(text_of):
    def setup(fx, tmp):
        path = tmp / "study.yaml"
        content = text_of(fx, tmp)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return ["run", path]
    return setup


def study_with(change, *extra):
    def setup(fx, tmp):
        raw = yaml.safe_load(Path(fx["study"]).read_text())
        raw["output_dir"] = str(tmp / "new")
        raw = change(raw, fx, tmp) or raw
        return ["run", write_study(tmp, raw), *extra]
    return setup


def damaged_store(*statements, command="report", params=lambda out: ()):
    def setup(fx, tmp):
        out = copy_of(fx, tmp)
        for statement in statements:
            sql(out, statement.replace("JOB", first_job(out)), params=params(out))
        if command == "report":
            return ["report", out, "--resamples", "100", "--patch-images", "0"]
        return [command, out] + (["--predictions"] if command == "results-predictions" else [])
    return setup


def zero_shot_sigmoid(raw, fx, tmp):
    raw["backbones"] = [{"name": "open_clip:ViT-B-32", "weights": "none"}]
    raw["protocols"] = [{"zero_shot": {"multilabel": "sigmoid"}}]
    raw["datasets"] = [{"name": "nih", "adapter": "csv", "path": str(Path(fx["npz"]).parents[1] /
                                                                     "nih_chestxray14_images" / "labels.csv"),
                        "image_column": "Image Index", "label_columns": ["Effusion", "Atelectasis"],
                        "patient_column": "Patient ID"}]


def external_to_a_broken_dataset(raw, fx, tmp):
    raw["datasets"][0]["external_tests"] = ["cxr2"]
    raw["datasets"].append({"name": "cxr2", "adapter": "medmnist", "path": "/nonexistent/x.npz",
                            "external_only": True})


ERROR = "error"  # exit 2, one error line holding the text, no traceback, nothing stored
CASES = [
    # tracking URIs: refused before any work
    ("track: ftp scheme", track("mlflow:ftp://example/x"), (ERROR, "does not store runs at ftp://")),
    ("track: relative folder", track("mlflow:./mlruns"), (ERROR, "MLflow 3 refuses")),
    ("track: file URI", track("mlflow:file:///shared/mlruns"), (ERROR, "MLflow 3 refuses")),
    ("track: bare folder name", track("mlflow:mlruns"), (ERROR, "plain folder")),
    ("track: sqlite in memory", track("mlflow:sqlite://"), (ERROR, "in-memory")),
    ("track: sqlite under /proc", track("mlflow:sqlite:////proc/radbench/mlflow.db"), (ERROR, "cannot write there")),
    ("track: sqlite on a text file", track("mlflow:sqlite:///TMP/notes.db", prepare=lambda tmp: (
        tmp / "notes.db").write_text("not a database\n")), (ERROR, "is not an SQLite database")),
    ("track: sqlite on a folder", track("mlflow:sqlite:///TMP/adir", prepare=lambda tmp: (tmp / "adir").mkdir()),
     (ERROR, "is not a file")),
    ("track: postgresql without its driver", track("mlflow:postgresql://u@127.0.0.1:9/db"),
     (ERROR, "MLflow cannot use postgresql://")),
    ("track: databricks without credentials", track("mlflow:databricks"), (ERROR, "MLflow cannot use databricks")),
    ("track: closed http port", track("mlflow:http://127.0.0.1:9"), (ERROR, "cannot be reached")),
    ("track: not mlflow", track("wandb"), (ERROR, "give mlflow or mlflow:URI")),
    ("track: closed https port", track("mlflow:https://127.0.0.1:9"), (ERROR, "cannot be reached")),
    ("track: report to an ftp URI", track("mlflow:ftp://example/x", "report"), (ERROR, "ftp://")),
    ("track: report to a file URI", track("mlflow:file:///tmp/x", "report"), (ERROR, "MLflow 3 refuses")),
    # hostile or broken study files
    ("yaml: alias bomb", study_text(lambda fx, tmp: BOMB), (ERROR, "expand to more than")),
    ("yaml: alias inside itself", study_text(lambda fx, tmp: "a: &x\n  - *x\n"), (ERROR, "refers to the node")),
    ("yaml: nested 5000 deep", study_text(lambda fx, tmp: "a: " + "[" * 5000 + "]" * 5000), (ERROR, "nested")),
    ("yaml: file of 5 MB", study_text(lambda fx, tmp: "# padding\n" * 520_000), (ERROR, "too large")),
    ("yaml: binary file", study_text(lambda fx, tmp: os.urandom(2048)), (ERROR, "not a text file")),
    ("yaml: a list, not a mapping", study_text(lambda fx, tmp: "- 1\n- 2\n"), (ERROR, "must be a mapping")),
    ("study: unknown template set", study_with(lambda raw, fx, tmp: raw.update(
        protocols=[{"zero_shot": {"templates": "radiology"}}])), (ERROR, "'radiology' is not a built-in set")),
    ("study: sigmoid without a logit bias", study_with(zero_shot_sigmoid), (ERROR, "learned logit bias")),
    ("study: external test of a broken dataset", study_with(external_to_a_broken_dataset), (ERROR, "x.npz")),
    ("cli: executor misspelt", study_with(lambda raw, fx, tmp: None, "--executor", "submitit_local"),
     (ERROR, "did you mean 'submitit-local'")),
    ("cli: seeds not numbers", study_with(lambda raw, fx, tmp: None, "--seeds", "a,b"), (ERROR, "--seeds 'a,b'")),
    # the report's statistics cache: only a cache
    ("stat cache: random payloads", damaged_store("UPDATE stat_cache SET payload = randomblob(300) WHERE rowid % 2 = 0"),
     ("ok", "dropped and computed again")),
    ("stat cache: truncated payloads", damaged_store("UPDATE stat_cache SET payload = substr(payload, 1, 40)"),
     ("ok", "dropped and computed again")),
    ("stat cache: empty payloads", damaged_store("UPDATE stat_cache SET payload = X''"), ("ok", "computed again")),
    ("stat cache: another layout", damaged_store("DROP TABLE stat_cache",
                                                 "CREATE TABLE stat_cache (job_key TEXT, stuff BLOB)"),
     ("ok", "had another layout")),
    ("stat cache: another job's payloads", damaged_store(
        "UPDATE stat_cache SET payload = (SELECT payload FROM stat_cache ORDER BY job_key LIMIT 1)"),
     ("ok", "computed again")),
    # prediction blobs: named, left out, never read as numbers
    ("blobs: scores random, same length", damaged_store(
        "UPDATE predictions SET scores = randomblob(length(scores)) WHERE job_key = 'JOB'"), ("ok", "JOB")),
    ("blobs: targets truncated", damaged_store(
        "UPDATE predictions SET targets = substr(targets, 1, 12) WHERE job_key = 'JOB'"), ("ok", "JOB")),
    ("blobs: sample ids swapped", damaged_store(
        "UPDATE predictions SET sample_ids = patient_ids || X'00' WHERE job_key = 'JOB'"), ("ok", "JOB")),
    ("blobs: patient ids truncated", damaged_store(
        "UPDATE predictions SET patient_ids = substr(patient_ids, 1, 10) WHERE job_key = 'JOB'"), ("ok", "JOB")),
    ("blobs: shape garbled", damaged_store("UPDATE predictions SET shape = '[1, oops' WHERE job_key = 'JOB'"),
     ("ok", "JOB")),
    ("blobs: checksums garbled", damaged_store("UPDATE predictions SET checksums = 'x' WHERE job_key = 'JOB'"),
     ("ok", "JOB")),
    ("blobs: scores random, in results", damaged_store(
        "UPDATE predictions SET scores = randomblob(length(scores)) WHERE job_key = 'JOB'", command="results"),
     ("ok", "JOB")),
    ("blobs: scores random, in --predictions", damaged_store(
        "UPDATE predictions SET scores = randomblob(length(scores)) WHERE job_key = 'JOB'",
        command="results-predictions"), ("ok", "JOB")),
    ("verify: scores random", damaged_store(
        "UPDATE predictions SET scores = randomblob(length(scores)) WHERE job_key = 'JOB'", command="verify"),
     ("exit1", "JOB")),
    ("verify: a stored metric edited", damaged_store(
        "UPDATE metrics SET value = 0.123 WHERE job_key = 'JOB' AND name = 'auroc' AND split = 'test'",
        command="verify"), ("exit1", "auroc stored 0.123")),
    ("verify: a folder without a store", lambda fx, tmp: (tmp / "empty").mkdir() or ["verify", tmp / "empty"],
     (ERROR, "no results.sqlite here")),
    ("verify: NaN scores in an older store", damaged_store(
        "UPDATE predictions SET checksums = NULL, scores = ? WHERE job_key = 'JOB'", command="verify",
        params=lambda out: (nan_scores(out),)), ("exit1", "non-finite scores")),
    ("verify: checksums of an older store", damaged_store(
        "UPDATE predictions SET checksums = NULL, scores = randomblob(length(scores)) WHERE job_key = 'JOB'",
        command="verify"), ("exit1", "JOB")),
]


def test_there_are_at_least_forty_cases():
    assert len({case[0] for case in CASES}) == len(CASES) >= 40


def _jobs(folder: Path) -> int:
    count = 0
    for database in folder.rglob("results.sqlite"):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            count += conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return count


@pytest.mark.parametrize("name,setup,expect", CASES, ids=[c[0] for c in CASES])
def test_case(name, setup, expect, done, cli, tmp_path):
    argv = setup(done, tmp_path)
    command = "results" if argv[0] == "results-predictions" else argv[0]
    argv = [command, *argv[1:]]
    jobs_before = _jobs(tmp_path)
    started = time.perf_counter()
    result = cli(*argv)
    seconds = time.perf_counter() - started
    said = " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr, result.stderr[-3000:]
    kind, text = expect
    if kind == ERROR:
        assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and text in said, result.stderr
        assert _jobs(tmp_path) == jobs_before, "a job was stored"
        assert seconds < 30, seconds  # the bomb, the deep file: refused at once
        return
    out = Path(argv[1])
    if "JOB" in text:
        text = text.replace("JOB", first_job(out))
    if kind == "exit1":  # verify names what differs
        assert result.exit_code == 1 and text in " ".join(result.stdout.split()), result.stdout + result.stderr
        return
    assert result.exit_code == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) >= 1 and text in said, result.stderr
    if command == "report":
        board = pd.read_csv(out / "report" / "tables" / "leaderboard.csv")
        assert len(board) and board["mean"].notna().all()
        if name.startswith("blobs"):
            assert (board.query("protocol == 'linear'").runs == 2).all()  # the damaged run left out
        else:  # every cached statistic that was damaged is computed again, and equal to the undamaged report's
            again = cli(*argv)
            assert again.exit_code == 0 and "warning:" not in again.stderr, again.stderr
    if command == "results" and "--predictions" in argv:
        assert first_job(out) not in result.stdout and len(result.stdout.splitlines()) > 1


def test_damaged_statistics_give_the_numbers_of_an_undamaged_report(done, cli, tmp_path):
    clean = copy_of(done, tmp_path / "a")
    damaged = copy_of(done, tmp_path / "b")
    sql(damaged, "UPDATE stat_cache SET payload = randomblob(200)")
    for out in (clean, damaged):
        assert cli("report", out, "--resamples", "100", "--patch-images", "0").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(clean / "report" / "tables" / "leaderboard.csv"),
                                  pd.read_csv(damaged / "report" / "tables" / "leaderboard.csv"))


def test_python_api_arguments_are_one_line_errors(done):
    import radbench
    from radbench.errors import ConfigError

    for args, kwargs, text in (((42,), {}, "study is a int"), ((done["study"],), {"seeds": "a,b"}, "seeds='a,b'"),
                               ((done["study"],), {"limit": "5"}, "limit='5'"),
                               ((done["study"],), {"backbones": 3}, "backbones=3")):
        with pytest.raises(ConfigError, match=text.replace("(", r"\(")):
            radbench.run(*args, **kwargs)


def test_a_tracking_failure_after_the_run_keeps_the_results_and_says_so(done, cli, tmp_path, monkeypatch):
    """The server answered at start-up and failed afterwards: one line naming where the results are, exit 2;
    with --track-optional a warning and exit 0. The jobs are stored either way."""
    from radbench.results.tracking import MlflowTracker

    monkeypatch.setattr(MlflowTracker, "check", lambda self: None)
    monkeypatch.setattr(MlflowTracker, "sync", lambda self, store: (_ for _ in ()).throw(OSError("connection reset")))
    raw = yaml.safe_load(Path(done["study"]).read_text())
    raw["output_dir"] = str(tmp_path / "out")
    study = write_study(tmp_path, raw)
    failed = cli("run", study, "--track", "mlflow:http://127.0.0.1:9")
    assert failed.exit_code == 2 and "Traceback" not in failed.stderr
    said = " ".join(failed.stderr.split())
    assert "connection reset" in said and f"the results are stored in {tmp_path / 'out'}" in said, said
    assert _jobs(tmp_path) == 6
    optional = cli("run", study, "--track", "mlflow:http://127.0.0.1:9", "--track-optional")
    assert optional.exit_code == 0 and "warning:" in optional.stderr and "connection reset" in optional.stderr


def _read_only_mount(folder: Path, command: str) -> subprocess.CompletedProcess | None:
    """`command` in a mount namespace where `folder` is mounted read-only (as a shared results folder is); None
    where this machine does not allow one."""
    script = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} && {command}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(folder.parent / "mpl")}
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, env=env,
                              timeout=300)
    except (FileNotFoundError, PermissionError):
        return None


def test_a_read_only_results_folder_is_reported_and_read(done, tmp_path):
    out = copy_of(done, tmp_path)
    before = (out / "results.sqlite").read_bytes()
    radbench = f"{sys.executable} -m radbench"
    probe = _read_only_mount(out, f"touch {out}/probe")
    if probe is None or "Read-only file system" not in probe.stderr:
        pytest.skip(f"no read-only mount here (unshare --mount: {probe and probe.stderr.strip()[:200]})")
    commands = [f"{radbench} report {out} --out {tmp_path / 'page'} --resamples 100 --patch-images 0",
                f"{radbench} results {out}", f"{radbench} status {out}", f"{radbench} verify {out}",
                f"{radbench} results {out} --predictions"]
    for command in commands:
        result = _read_only_mount(out, command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr[-2000:])
    page = (tmp_path / "page" / "index.html").read_text()
    assert "What this study found" in page
    board = pd.read_csv(tmp_path / "page" / "tables" / "leaderboard.csv")
    assert set(board.protocol) == {"knn", "linear"}
    into_it = _read_only_mount(out, f"{radbench} report {out}")
    assert into_it.returncode == 2 and "read-only file system" in into_it.stderr
    assert (out / "results.sqlite").read_bytes() == before and not (out / "report").exists()


@pytest.mark.parametrize("size,where", [("40k", "results.sqlite"), ("400k", "train.npy")])
def test_a_full_disk_is_one_line_naming_the_file(done, tmp_path, size, where):
    raw = yaml.safe_load(Path(done["study"]).read_text())
    full = tmp_path / "full"
    full.mkdir()
    raw["output_dir"] = str(full / "out")
    raw["datasets"][0]["limit"] = 3000
    study = write_study(tmp_path, raw)
    script = (f"mount -t tmpfs -o size={size} tmpfs {full} && {sys.executable} -m radbench run {study} -q")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, env=env,
                                timeout=300)
    except (FileNotFoundError, PermissionError):
        pytest.skip("no mount namespace here")
    if "mount:" in result.stderr:
        pytest.skip(f"no tmpfs here: {result.stderr.strip()[:200]}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert where in errors[0] and "disk full" in errors[0], errors[0]


def test_the_yaml_bomb_is_refused_in_well_under_a_second(tmp_path):
    from radbench.config import load_study
    from radbench.errors import ConfigError

    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expand to more than"):
        load_study(path)
    assert time.perf_counter() - started < 1.0


def test_a_study_with_a_few_aliases_still_loads(tmp_path, pneumonia_npz):
    """Aliases in moderation are YAML as users write it: one value reused through an anchor."""
    from radbench.config import load_study

    (tmp_path / "s.yaml").write_text(f"""name: aliases
output_dir: {tmp_path / 'out'}
backbones: [{{name: "timm:test_vit", weights: none}}]
datasets: [{{name: p, adapter: medmnist, path: {pneumonia_npz}, limit: &n 20}}]
protocols: [{{knn: {{k: [*n]}}}}]
""")
    study = load_study(tmp_path / "s.yaml")
    assert study.datasets[0].limit == 20 and study.protocols[0].config.k == [20]

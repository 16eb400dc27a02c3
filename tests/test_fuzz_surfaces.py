"""Fuzz of the newer surfaces: `report`, `results`, `status`, `pretrain`, the executors, Hugging Face folders,
open_clip / xrv names and names that become paths. For each bad input: exit 2, one `error:` line naming the
culprit, no traceback, and nothing written (no report folder, the store's bytes unchanged, no pretraining state,
no job stored). With tests/test_fuzz_cli.py's cases this makes well over 90 distinct bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_cli, tiny_study, write_study


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, shared_data):
    """A finished tiny study, a folder of images, a small save_pretrained model: written once."""
    import torch
    import transformers
    from PIL import Image

    root = tmp_path_factory.mktemp("surfaces")
    npz = shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz"
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(npz), "limit": 30}]
    study = write_study(root, tiny_study(root, datasets, [{"knn": {"k": [3]}}], seeds=[0, 1]))
    run_cli("run", study, "--quiet")
    with sqlite3.connect(root / "out" / "results.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(images / f"i{i}.png")
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8)
    hf = root / "hf"
    transformers.Dinov2Model(config).save_pretrained(hf)
    transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(hf)
    return {"root": root, "done": root / "out", "npz": npz, "images": images, "hf": hf}


def copy_done(fx, tmp):
    out = tmp / "out"
    shutil.copytree(fx["done"], out, ignore=shutil.ignore_patterns("report"))
    return out


def store_sql(*statements):
    def setup(fx, tmp):
        out = copy_done(fx, tmp)
        with sqlite3.connect(out / "results.sqlite") as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return ["report", out]
    return setup


def damaged_store(command, how):
    def setup(fx, tmp):
        out = copy_done(fx, tmp)
        data = (out / "results.sqlite").read_bytes()
        (out / "results.sqlite").write_bytes(os.urandom(len(data)) if how == "random" else data[: len(data) // 2])
        return [command, out]
    return setup


def foreign_store(command):
    def setup(fx, tmp):
        out = tmp / "foreign"
        out.mkdir()
        with sqlite3.connect(out / "results.sqlite") as conn:
            conn.execute("CREATE TABLE patients (id INTEGER, name TEXT)")
        return [command, out]
    return setup


def plain(command, where):
    def setup(fx, tmp):
        if where == "missing":
            return [command, tmp / "nowhere"]
        if where == "file":
            (tmp / "a_file").write_text("x\n")
            return [command, tmp / "a_file"]
        (tmp / "empty").mkdir()
        return [command, tmp / "empty"]
    return setup


def report_with(*extra, prepare=None):
    def setup(fx, tmp):
        out = copy_done(fx, tmp)
        if prepare is not None:
            prepare(tmp, out)
        return ["report", out, *[str(tmp / e[4:]) if isinstance(e, str) and e.startswith("TMP/") else e
                                for e in extra]]
    return setup


def pretrain(change=None, prepare=None):
    def setup(fx, tmp):
        raw = {"name": "p", "output_dir": str(tmp / "pre"), "backbone": {"name": "timm:test_vit", "weights": "none"},
               "data": [{"adapter": "folder", "path": str(fx["images"])}], "image_size": 32, "batch_size": 4,
               "epochs": 1, "num_workers": 0, "head": {"output_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}}
        if change is not None:
            raw = change(raw, fx, tmp)
        path = tmp / "pretrain.yaml"
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
        if prepare is not None:
            prepare(tmp, fx)
        return ["pretrain", path, "-q"]
    return setup


def put(key, value):
    def change(raw, fx, tmp):
        node, *_ = [raw]
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value(fx, tmp) if callable(value) else value
        return raw
    return change


def study_run(change, *extra):
    def setup(fx, tmp):
        datasets = [{"name": "p", "adapter": "medmnist", "path": str(fx["npz"]), "limit": 30}]
        raw = tiny_study(tmp, datasets, [{"knn": {"k": [3]}}])
        raw = change(raw, fx, tmp)
        return ["run", write_study(tmp, raw), *extra]
    return setup


def backbone(entry):
    return study_run(lambda raw, fx, tmp: {**raw, "backbones": [entry(fx, tmp) if callable(entry) else entry]})


def hf_folder(damage):
    def entry(fx, tmp):
        folder = tmp / "hf"
        shutil.copytree(fx["hf"], folder)
        damage(folder)
        return {"name": "hf:local/tiny-dinov2", "weights": str(folder)}
    return entry


def cut_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def pickle_payload(folder):
    import pickle

    (folder / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))


def named(where, name):
    def change(raw, fx, tmp):
        if where == "datasets":
            raw["datasets"][0]["name"] = name
        elif where == "backbones":
            raw["backbones"][0]["label"] = name
        else:
            raw["protocols"] = [{"knn": {"k": [3], "name": name}}]
        return raw
    return study_run(change)


def live_driver_claim(fx, tmp):
    out = copy_done(fx, tmp)
    with sqlite3.connect(out / "results.sqlite") as conn:
        conn.execute("INSERT INTO claims VALUES ('driver', 'another-driver', ?, ?, ?)",
                     (socket.gethostname(), os.getpid(), time.time()))
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(fx["npz"]), "limit": 30}]
    study = write_study(tmp, tiny_study(tmp, datasets, [{"knn": {"k": [3]}}], seeds=[0, 1],
                                        output_dir=str(out)))
    return ["run", study, "--executor", "submitit-local"]


def garbage(name):
    def entry(fx, tmp):
        (tmp / "w.pth").write_bytes(os.urandom(4096))
        return {"name": name, "weights": str(tmp / "w.pth")}
    return entry


# (case id, setup(fixtures, tmp) -> argv, substring of the error line)
CASES = [
    # report
    ("report: no store here", plain("report", "empty"), "no results.sqlite here"),
    ("report: OUT missing", plain("report", "missing"), "nowhere"),
    ("report: OUT is a file", plain("report", "file"), "a_file"),
    ("report: foreign store", foreign_store("report"), "not a radbench results store"),
    ("report: random bytes store", damaged_store("report", "random"), "damaged results store"),
    ("report: truncated store", damaged_store("report", "truncated"), "results.sqlite"),
    ("report: every prediction deleted", store_sql("DELETE FROM predictions"), "none of the 2 stored jobs"),
    ("report: every prediction torn", store_sql("UPDATE predictions SET scores = substr(scores, 1, 10)"),
     "predictions damaged"),
    ("report: every shape garbled", store_sql("UPDATE predictions SET shape = 'garbage'"), "unreadable shape"),
    ("report: --out is a file", report_with("--out", "TMP/file", prepare=lambda tmp, out: (tmp / "file").write_text(
        "x")), "is a file"),
    ("report: --out under a file", report_with("--out", "TMP/file/report", prepare=lambda tmp, out: (
        tmp / "file").write_text("x")), "cannot write the report"),
    ("report: --out on /proc", report_with("--out", "/proc/radbench-report"), "/proc"),
    ("report: --resamples a billion", report_with("--resamples", "1000000000"), "--resamples 1000000000"),
    ("report: --resamples above the bound", report_with("--resamples", "200000"), "at most 100000"),
    # results and status
    ("results: foreign store", foreign_store("results"), "not a radbench results store"),
    ("results: random bytes store", damaged_store("results", "random"), "damaged results store"),
    ("results: no store here", plain("results", "empty"), "no results.sqlite here"),
    ("results: OUT missing", plain("results", "missing"), "nowhere"),
    ("status: foreign store", foreign_store("status"), "not a radbench results store"),
    ("status: random bytes store", damaged_store("status", "random"), "damaged results store"),
    ("status: truncated store", damaged_store("status", "truncated"), "results.sqlite"),
    ("status: no store here", plain("status", "empty"), "no results.sqlite here"),
    ("status: OUT is a file", plain("status", "file"), "a_file"),
    # pretrain
    ("pretrain: yaml syntax", pretrain(lambda raw, fx, tmp: "name: p\noutput_dir: [\n"), "invalid YAML"),
    ("pretrain: unknown key", pretrain(put("epochz", 3)), "epochz"),
    ("pretrain: no backbone", pretrain(put("backbone", None)), "backbone"),
    ("pretrain: unknown backbone", pretrain(put("backbone.name", "timm:no_such_vit")), "no_such_vit"),
    ("pretrain: data folder missing", pretrain(put("data.0.path", "/nonexistent/images")), "/nonexistent/images"),
    ("pretrain: empty data list", pretrain(put("data", [])), "data"),
    ("pretrain: batch size one", pretrain(put("batch_size", 1)), "batch_size"),
    ("pretrain: zero epochs", pretrain(put("epochs", 0)), "epochs"),
    ("pretrain: views bogus", pretrain(put("views", "tiles")), "views"),
    ("pretrain: checkpoint_every zero", pretrain(put("checkpoint_every", 0)), "checkpoint_every"),
    ("pretrain: negative teacher temp", pretrain(put("teacher_temp", -0.1)), "teacher_temp"),
    ("pretrain: splits bogus", pretrain(put("splits", ["holdout"])), "splits"),
    ("pretrain: output_dir is a file", pretrain(put("output_dir", lambda fx, tmp: (tmp / "f").write_text("x") and
                                                  str(tmp / "f"))), "/f"),
    ("pretrain: output_dir on /proc", pretrain(put("output_dir", "/proc/radbench-pretrain")), "/proc"),
    ("pretrain: evaluate study missing", pretrain(put("evaluate", {"study": "/nonexistent/eval.yaml"})),
     "eval.yaml"),
    ("pretrain: weights file missing", pretrain(put("backbone.weights", "/nonexistent/w.pth")), "w.pth"),
    ("pretrain: garbage state", pretrain(prepare=lambda tmp, fx: (tmp / "pre").mkdir() or (
        tmp / "pre" / "state.pt").write_bytes(os.urandom(512))), "cannot read the pretraining state"),
    # executors
    ("executor: unknown", study_run(lambda raw, fx, tmp: raw, "--executor", "kubernetes"), "kubernetes"),
    ("executor: slurm arg without =", study_run(lambda raw, fx, tmp: raw, "--executor", "slurm", "--slurm-arg",
                                                "account"), "--slurm-arg 'account'"),
    ("executor: a live driver on OUT", live_driver_claim, "another executor driver is running"),
    # Hugging Face folders and other families
    ("hf: no config.json", backbone(hf_folder(lambda f: (f / "config.json").unlink())), "config.json is missing"),
    ("hf: config.json not JSON", backbone(hf_folder(lambda f: (f / "config.json").write_text("{oops"))),
     "config.json is not JSON"),
    ("hf: safetensors cut in half", backbone(hf_folder(lambda f: cut_half(f / "model.safetensors"))),
     "model.safetensors is incomplete"),
    ("hf: no weights file", backbone(hf_folder(lambda f: (f / "model.safetensors").unlink())), "holds no weights"),
    ("hf: no image processor", backbone(hf_folder(lambda f: (f / "preprocessor_config.json").unlink())),
     "no preprocessor_config.json"),
    ("hf: pickle payload", backbone(hf_folder(pickle_payload)), "holds code"),
    ("hf: repo id without org", backbone({"name": "hf:justaname", "weights": "none"}), "hf:justaname"),
    ("open_clip: unknown model", backbone({"name": "open_clip:no-such-arch", "weights": "none"}), "no-such-arch"),
    ("open_clip: garbage checkpoint", backbone(garbage("openclip_vitb16")), "w.pth"),
    ("xrv: unknown model", backbone({"name": "xrv:no-such-net", "weights": "none"}), "no-such-net"),
    ("xrv: garbage checkpoint", backbone(garbage("xrv:densenet121-res224-all")), "w.pth"),
    # names that become paths, and protocol restrictions
    ("name: dataset '..'", named("datasets", ".."), "no letter or digit"),
    ("name: dataset empty", named("datasets", " "), "is empty"),
    ("name: backbone label '/'", named("backbones", "/"), "no letter or digit"),
    ("name: protocol '...'", named("protocols", "..."), "no letter or digit"),
    ("protocol backbones: unknown name", study_run(lambda raw, fx, tmp: {
        **raw, "protocols": [{"knn": {"k": [3], "backbones": ["timm:test_vitt"]}}]}),
     "did you mean 'timm:test_vit'"),
    ("protocol backbones: not a list", study_run(lambda raw, fx, tmp: {
        **raw, "protocols": [{"knn": {"k": [3], "backbones": "timm:test_vit"}}]}), "backbones"),
    ("keep_blocks beyond the depth", study_run(lambda raw, fx, tmp: {
        **raw, "protocols": [{"decapitation": {"keep_blocks": [1, 40]}}]}), "exceeds the"),
    ("selection metric not computed for the task", study_run(lambda raw, fx, tmp: {
        **raw, "selection_metric": "kappa"}), "selection_metric 'kappa' is not computed"),
]


def test_the_cases_are_distinct_and_with_the_older_fuzz_over_ninety():
    from tests.test_fuzz_cli import CASES as OLDER

    names = [case[0] for case in CASES]
    assert len(set(names)) == len(names) and len(names) + len(OLDER) >= 90


def _files(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.name == "results.sqlite" else None)
            for p in folder.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _jobs(folder: Path) -> dict[str, int]:
    """Jobs in every readable radbench store under `folder` (a new store counts as 0 before)."""
    counts = {}
    for database in folder.rglob("results.sqlite"):
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                counts[str(database)] = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        except sqlite3.Error:
            continue
    return {k: v for k, v in counts.items() if v}


@pytest.mark.parametrize("name,setup,culprit", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, setup, culprit, fixtures, cli, tmp_path):
    argv = setup(fixtures, tmp_path)
    before, jobs_before = _files(tmp_path), _jobs(tmp_path)
    started = time.perf_counter()
    result = cli(*argv)
    seconds = time.perf_counter() - started
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert culprit in " ".join(result.stderr.split()), result.stderr
    after = _files(tmp_path)
    created = sorted(set(after) - set(before))
    assert not [c for c in created if "report" in c or "state.pt" in c or "checkpoints" in c], created
    if argv[0] in ("report", "results", "status"):  # reading commands never write to a store
        assert all(after.get(k) == v for k, v in before.items() if v is not None), "a store's bytes changed"
    assert _jobs(tmp_path) == jobs_before, "a job was stored"
    print(json.dumps({"case": name, "seconds": round(seconds, 3)}))

"""Faults on the newer surfaces that are not bad inputs of one command line: names that would become paths, a
report that fails halfway, a pretraining log torn by a kill, a disk that fills during pretraining writes."""

from __future__ import annotations

import errno
import json

import torch

from tests.conftest import tiny_study, write_study

NASTY = {"dataset": '../../ds<script>alert("x")</script>\'', "backbone": "../evil label:1", "protocol": '../../p"q'}


def test_no_file_is_written_outside_the_output_folder_whatever_the_names(tmp_path, pneumonia_npz, cli):
    work = tmp_path / "work"
    work.mkdir()
    datasets = [{"name": NASTY["dataset"], "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}]
    raw = tiny_study(work, datasets, [{"knn": {"k": [3], "name": NASTY["protocol"]}},
                                      {"finetune": {"epochs": 1, "lr": [1e-3], "save_model": True}}])
    raw["backbones"][0]["label"] = NASTY["backbone"]
    study = write_study(work, raw)
    before = {p for p in tmp_path.rglob("*")}
    assert cli("run", study).exit_code == 0
    result = cli("report", work / "out", "--resamples", "100")
    assert result.exit_code == 0, result.stderr
    created = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in created if not p.is_relative_to(work / "out")]
    assert not outside, outside
    page = (work / "out" / "report" / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page  # the name is shown, escaped
    names = [p.name for p in created]
    assert not any(".." in n.replace("...", "") and "/" in n for n in names)


def test_a_report_that_fails_halfway_leaves_the_previous_one_whole(tmp_path, pneumonia_npz, cli, monkeypatch):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [3]}}], seeds=[0, 1]))
    assert cli("run", study).exit_code == 0
    out = tmp_path / "out"
    assert cli("report", out, "--resamples", "100").exit_code == 0
    page = (out / "report" / "index.html").read_bytes()
    import radbench.report.figures as figures

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(figures, "save", full_disk)
    result = cli("report", out, "--resamples", "100")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "cannot write the report (disk full)" in " ".join(result.stderr.split())
    assert (out / "report" / "index.html").read_bytes() == page
    assert not [p for p in out.iterdir() if p.name.startswith(".report")]  # no temporary folder left


def test_a_torn_line_in_a_pretraining_log_is_skipped_with_one_warning(tmp_path, pneumonia_npz, cli):
    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"knn": {"k": [3]}}]))
    assert cli("run", study).exit_code == 0
    out = tmp_path / "out"
    rows = [{"step": s, "loss": 5.0 - s / 10, "dino_kl": 0.5, "teacher_entropy": 0.9, "teacher_batch_entropy": 0.9,
             "teacher_feature_std": 0.1} for s in range(1, 6)]
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "loss": 4.')
    result = cli("report", out, "--resamples", "100")
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert said.count("unreadable line(s) skipped") == 1 and "1 unreadable line(s)" in said
    assert "5 steps" in (out / "report" / "index.html").read_text()


def test_a_full_disk_during_pretraining_writes_is_one_line_and_the_last_state_resumes(tmp_path, shared_data,
                                                                                     monkeypatch, cli):
    import yaml

    import radbench.pretrain.state as state
    from tests.test_pretrain import pretrain_raw

    raw = pretrain_raw(shared_data, tmp_path / "pre", epochs=1, batch_size=32, checkpoint_every=1, image_size=32)
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli("pretrain", path, "-q", "--max-steps", "1").exit_code == 0
    saved = torch.load(tmp_path / "pre" / "state.pt", weights_only=True)
    assert saved["step"] == 1
    real_save = torch.save

    def fills_the_disk(obj, target, *args, **kwargs):
        real_save(obj, target, *args, **kwargs)
        with open(target, "r+b") as handle:  # what a full disk leaves: a torn temporary file, then the error
            handle.truncate(100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1408 vs 1302")

    monkeypatch.setattr(torch, "save", fills_the_disk)
    result = cli("pretrain", path, "-q", "--max-steps", "2")
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    said = " ".join(result.stderr.split())
    assert "state.pt: cannot write (disk full); free space or choose another output_dir" in said, said
    assert torch.load(tmp_path / "pre" / "state.pt", weights_only=True)["step"] == 1  # the last state, whole
    assert not list((tmp_path / "pre").glob(".state.pt*"))  # no torn temporary left
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run resumes from step 1
    again = cli("pretrain", path, "-q", "--max-steps", "2")
    assert again.exit_code == 0 and "1 steps run (now at step 2" in " ".join(again.stderr.split()), again.stderr

    def teacher_fills_the_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", teacher_fills_the_disk)
    result = cli("pretrain", path, "-q", "--max-steps", "3")
    assert result.exit_code == 2 and "backbone.safetensors: cannot write (disk full)" in " ".join(
        result.stderr.split()), result.stderr
    assert state.saved_checkpoints(tmp_path / "pre")[-1][0] == 2  # the earlier teachers stay

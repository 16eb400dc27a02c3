"""Pretraining faults: killed between the last state and its teacher's export, the rerun still exports (and
evaluates) that teacher; temporaries of killed writes are cleaned."""

from __future__ import annotations

import socket

import pytest
import torch
from safetensors.torch import load_file

import radbench.pretrain.loop as loop
from radbench.pretrain.config import parse_pretrain
from radbench.pretrain.model import build_networks
from radbench.pretrain.state import checkpoint_folder, saved_checkpoints
from radbench.progress import Reporter
from radbench.results import ResultsStore
from radbench.training.saving import trunk_weights
from tests.conftest import ROOT, write_study
from tests.test_pretrain import pretrain_raw


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no `except Exception` catches it."""


def test_a_kill_between_the_state_and_its_teacher_export_is_finished_by_the_rerun(tmp_path, shared_data,
                                                                                  pneumonia_npz, monkeypatch):
    study = write_study(tmp_path, {
        "name": "eval", "output_dir": str(tmp_path / "unused"), "image_size": 64, "batch_size": 64,
        "backbones": [{"name": "timm:test_vit", "weights": "none"}],
        "datasets": [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}],
        "protocols": [{"knn": {"k": [5]}}]}, "eval.yaml")
    raw = pretrain_raw(shared_data, tmp_path / "out", epochs=1, batch_size=32, checkpoint_every=2,
                       evaluate={"study": str(study), "initial": False})
    parsed = parse_pretrain(raw, ROOT)
    out = parsed.config.output_dir
    real_export = loop.export_teacher

    def export_unless_last(folder, teacher, *, step, **keys):
        if step == 3:  # 105 images // 32 = 3 steps: the state of step 3 is written, then the process dies
            raise Killed
        return real_export(folder, teacher, step=step, **keys)

    monkeypatch.setattr(loop, "export_teacher", export_unless_last)
    with pytest.raises(Killed):
        loop.run_pretraining(parsed, Reporter(quiet=True))
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 3
    assert [step for step, _ in saved_checkpoints(out)] == [2]
    # what a killed write leaves behind (another pid of this host, long gone)
    leftovers = [out / f".state.pt~{socket.gethostname()}~999999999.tmp",
                 checkpoint_folder(out, 2) / f".backbone.safetensors~{socket.gethostname()}~999999999.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")

    monkeypatch.setattr(loop, "export_teacher", real_export)
    again = loop.run_pretraining(parsed, Reporter(quiet=True))
    assert again.steps_run == 0
    assert [step for step, _ in saved_checkpoints(out)] == [2, 3]
    state = torch.load(out / "state.pt", weights_only=True)
    exported = load_file(checkpoint_folder(out, 3) / "backbone.safetensors")
    _, teacher = build_networks(parsed.config)
    teacher.load_state_dict(state["teacher"])
    expected = trunk_weights(teacher.trunk)
    assert exported.keys() == expected.keys() and all(torch.equal(exported[k], expected[k]) for k in exported)
    evaluated = set(ResultsStore(out / "results.sqlite").metrics("test").backbone)
    assert evaluated == {"cxr-dino@step2", "cxr-dino@step3"}
    assert not any(path.exists() for path in leftovers)

"""Pieces of `radbench pretrain` checked on their own: view generators, each method's losses against a direct
numpy re-computation, resume after kill -9, config errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from radbench.pretrain.config import parse_pretrain
from radbench.pretrain.model import build_networks
from radbench.pretrain.objective import Objective
from radbench.pretrain.views import ViewMaker
from tests.conftest import ROOT
from tests.test_pretrain import pretrain_raw


def config(tmp_path, shared, **overrides):
    return parse_pretrain(pretrain_raw(shared, tmp_path / "out", **overrides), ROOT).config


@pytest.mark.parametrize("views, counts", [
    ({"views": "fixed", "global_views": 3}, [(64, 3)]),
    ({"views": "multicrop", "local_views": 5, "local_size": 32}, [(64, 2), (32, 5)]),
])
def test_view_generators_give_the_configured_shapes_and_counts(tmp_path, shared_data, views, counts):
    cfg = config(tmp_path, shared_data, **views)
    maker = ViewMaker.from_config(cfg, (0.5,) * 3, (0.25,) * 3)
    image = torch.rand(1, 64, 64)
    out = maker(image, seed=3)
    expected = [size for size, n in counts for _ in range(n)]
    assert [v.shape for v in out] == [torch.Size([3, s, s]) for s in expected]
    again = maker(image, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(out, again))  # a sample's views are a function of its seed
    other = maker(image, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(out, other))
    assert not torch.equal(out[0], out[1])  # two different views of one image
    assert all(torch.isfinite(v).all() for v in out)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _softmax(x):
    return np.exp(_log_softmax(x))


def _sinkhorn(logits, temp, iterations=3):
    """DINOv2's sinkhorn_knopp_teacher, written out: equal prototype mass across the batch."""
    q = np.exp(logits / temp).T  # K x B
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def _cross_views(targets, student, student_temp):
    terms = [-(t * _log_softmax(s / student_temp)).sum(axis=1).mean()
             for i, t in enumerate(targets) for j, s in enumerate(student) if i != j]
    return float(np.mean(terms))


def _koleo(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    distances = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    return float(-np.log(distances.min(axis=1) + 1e-8).mean())


def _networks(cfg):
    student, teacher = build_networks(cfg)
    with torch.no_grad():  # a teacher different from the student, as after some training
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return student.double(), teacher.double()


def test_dino_loss_with_centring_equals_a_direct_recomputation(tmp_path, shared_data):
    cfg = config(tmp_path, shared_data, views="multicrop", local_views=2, local_size=32)
    student, teacher = _networks(cfg)
    objective = Objective(cfg).double()
    center = np.random.default_rng(0).normal(size=(1, 256)) * 0.1
    objective.dino.center.data = torch.tensor(center).view(1, 1, -1)
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    views += [torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(2)]
    out = objective(student, teacher, views, teacher_temp=0.05)
    with torch.no_grad():
        t = [teacher(v)[1].numpy() for v in views[:2]]
        s = [student(v)[1].numpy() for v in views]
    targets = [_softmax((x - center) / 0.05) for x in t]
    # lightly holds the temperature as a float32 scalar: agreement to 1e-7, not to float64's last digits
    assert math.isclose(float(out.loss.detach()), _cross_views(targets, s, 0.1), rel_tol=1e-7)
    new_center = 0.9 * center + 0.1 * np.concatenate(t).mean(axis=0, keepdims=True)
    assert np.allclose(objective.dino.center.view(1, -1).numpy(), new_center)


def test_dinov2_losses_equal_a_direct_recomputation(tmp_path, shared_data):
    cfg = config(tmp_path, shared_data, method="dinov2", koleo_weight=0.3, ibot={"weight": 0.7})
    student, teacher = _networks(cfg)
    objective = Objective(cfg).double()
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    mask = torch.zeros(8, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True  # image 0: 4 patches masked; image 5: 1 patch; the others none
    mask[5, 3, 3] = True
    out = objective(student, teacher, views, teacher_temp=0.06, mask=mask)

    both = torch.cat(views)
    flat = mask.flatten(1)
    with torch.no_grad():
        t_cls, t_logits, t_patches = teacher(both, patches=True)
        s_cls, s_logits, s_patches = student(both, mask=flat, patches=True)
        t_patch_logits = teacher.head(t_patches[flat]).numpy()
        s_patch_logits = student.head(s_patches[flat]).numpy()
    targets = np.split(_sinkhorn(t_logits.numpy(), 0.06), 2)
    dino = _cross_views(targets, np.split(s_logits.numpy(), 2), 0.1)
    patch_targets = _sinkhorn(t_patch_logits, 0.06)
    per_patch = -(patch_targets * _log_softmax(s_patch_logits / 0.1)).sum(axis=1)
    weights = np.array([1 / 4] * 4 + [1.0])  # 1 / (masked patches of the patch's image), in mask order
    ibot = float((per_patch * weights).sum() / 8)
    koleo = sum(_koleo(chunk) for chunk in np.split(s_cls.numpy(), 2))
    assert math.isclose(out.parts["dino"], dino, rel_tol=1e-9)
    assert math.isclose(out.parts["ibot"], ibot, rel_tol=1e-9)
    assert math.isclose(out.parts["koleo"], koleo, rel_tol=1e-9)
    assert math.isclose(float(out.loss.detach()), dino + 0.7 * ibot + 0.3 * koleo, rel_tol=1e-9)


def _write(tmp_path: Path, raw: dict, name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _pretrain(path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "radbench", "pretrain", str(path), "-q", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_rerun_ends_with_weights_equal_to_an_uninterrupted_run(tmp_path, shared_data):
    """dinov2 with multi-crop (masks, local views, Sinkhorn): every source of randomness is exercised. The killed
    run uses 2 data-loading workers, the uninterrupted one none: views must not depend on that."""
    common = dict(method="dinov2", views="multicrop", local_views=2, local_size=32, epochs=6, batch_size=8,
                  checkpoint_every=10)
    whole = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "whole", **common), "whole.yaml")
    killed = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "killed", **{**common, "num_workers": 2}),
                    "killed.yaml")
    uninterrupted = _pretrain(whole)
    victim = _pretrain(killed)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill between two checkpoints, after the first
        if log.is_file() and len(log.read_text().splitlines()) >= 15:
            break
        assert victim.poll() is None, victim.communicate()
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.communicate()
    state = torch.load(tmp_path / "killed" / "state.pt", weights_only=True)
    assert 10 <= state["step"] < 78  # resumed from a checkpoint, not from the end
    resumed = _pretrain(killed)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()

    from safetensors.torch import load_file

    final = "checkpoints/step0000078/backbone.safetensors"  # 105 images // 8 = 13 steps x 6 epochs
    a, b = load_file(tmp_path / "whole" / final), load_file(tmp_path / "killed" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)
    state_b = torch.load(tmp_path / "killed" / "state.pt", weights_only=True)
    for part in ("student", "objective"):
        assert all(torch.equal(state_a[part][k], state_b[part][k]) for k in state_a[part])
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
              for run in ("whole", "killed")]
    assert losses[0] == losses[1] and len(losses[0]) == 78


@pytest.mark.parametrize("change, message", [
    ({"method": "dinov3"}, "method"),
    ({"views": "fixed", "global_views": 1}, "global_views >= 2"),
    ({"backbone": {"name": "timm:resnet18", "weights": "none"}, "method": "dinov2"}, "not a ViT"),
    ({"data": [{"adapter": "folder", "path": "/nonexistent/cxr"}]}, "/nonexistent/cxr"),
    ({"global_scale": [0.5, 1.5]}, "crop scale"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr"),
])
def test_bad_pretraining_configs_are_one_line_errors(tmp_path, shared_data, cli, change, message):
    path = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "out", **change), "bad.yaml")
    result = cli("pretrain", path, "-q")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_changed_config_does_not_resume_a_state(tmp_path, shared_data, cli):
    path = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "out", epochs=1), "a.yaml")
    assert cli("pretrain", path, "-q").exit_code == 0
    changed = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "out", epochs=1, teacher_temp=0.07), "b.yaml")
    result = cli("pretrain", changed, "-q")
    assert result.exit_code == 2 and "different pretraining config" in result.stderr


def test_two_processes_under_torchrun_match_one_with_the_same_global_batch(tmp_path, shared_data):
    """gloo on CPU: each process takes half of every global batch of 16; gradients averaged, centres all-reduced."""
    from safetensors.torch import load_file

    common = dict(epochs=1, batch_size=16, checkpoint_every=100, num_workers=0)
    one = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "one", **common), "one.yaml")
    two = _write(tmp_path, pretrain_raw(shared_data, tmp_path / "two", **common), "two.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "radbench", "pretrain", str(one), "-q"], env=env, check=True,
                   capture_output=True, timeout=300)
    ran = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "radbench", "pretrain", str(two), "-q"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    a, b = (torch.load(tmp_path / run / "state.pt", weights_only=True)["student"] for run in ("one", "two"))
    start = build_networks(parse_pretrain(pretrain_raw(shared_data, tmp_path / "x"), ROOT).config)[0].state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    differ = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert differ < 1e-3 * moved, (moved, differ)  # trained, and the same up to float summation order
    teacher = "checkpoints/step0000006/backbone.safetensors"  # 105 images // 16 = 6 steps
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(load_file(tmp_path / "one" / teacher).values(),
                                                                 load_file(tmp_path / "two" / teacher).values()))
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
              for run in ("one", "two")]
    assert np.allclose(losses[0], losses[1], rtol=1e-4)


def test_collapse_monitors_see_a_collapsed_and_a_uniform_teacher(tmp_path, shared_data):
    from radbench.pretrain.objective import collapse_warning

    cfg = config(tmp_path, shared_data)
    objective = Objective(cfg)
    g = torch.Generator().manual_seed(0)
    healthy = objective.monitors(torch.randn(32, 64, generator=g),
                                 torch.softmax(torch.randn(32, 256, generator=g) * 5, dim=1))
    assert collapse_warning(healthy) is None and healthy["teacher_feature_std"] > 0.8
    one_point = torch.randn(1, 64, generator=g).expand(32, 64) + 1e-6 * torch.randn(32, 64, generator=g)
    assert "features collapsed" in collapse_warning(objective.monitors(one_point, torch.softmax(
        torch.randn(32, 256, generator=g) * 5, dim=1)))
    one_prototype = torch.zeros(32, 256)
    one_prototype[:, 3] = 1.0
    assert "few prototypes" in collapse_warning(objective.monitors(torch.randn(32, 64, generator=g), one_prototype))
    uniform = torch.full((32, 256), 1 / 256)
    assert "uniform" in collapse_warning(objective.monitors(torch.randn(32, 64, generator=g), uniform))

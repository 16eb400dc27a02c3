"""Every number can be traced to the weights that produced it: hub weights by the commit of the hub snapshot they
were loaded from, local files by their sha256. The hub path runs offline here from a hub cache the test writes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import timm
import torch

from tests.conftest import tiny_study, write_study

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_hub_weights_are_recorded_with_their_snapshot_commit(tmp_path, pneumonia_npz):
    from safetensors.torch import save_file

    cache = tmp_path / "hub"
    repo = cache / "models--timm--test_vit.r160_in1k"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(3)
    model = timm.create_model("test_vit", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              repo / "snapshots" / COMMIT / "model.safetensors")
    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                     [{"knn": {"k": [3]}}, {"bitfit": {"epochs": 1, "lr": [1e-3], "batch_size": 16, "augment": None}}])
    raw["backbones"] = [{"name": "timm:test_vit.r160_in1k", "weights": "hub"}]
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "radbench", "run", str(write_study(tmp_path, raw)), "--quiet"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        configs = [json.loads(row[0]) for row in conn.execute("SELECT config FROM jobs ORDER BY protocol")]
    assert len(configs) == 2  # bitfit trains on images, knn reads the feature cache: both record the commit
    for config in configs:
        assert config["backbone"]["identity"]["hub_revision"] == COMMIT
        assert config["backbone"]["identity"]["hub_id"] == "timm/test_vit.r160_in1k"


def test_local_checkpoints_are_recorded_by_sha256(tmp_path):
    import hashlib

    from radbench.backbones import BackboneConfig, describe_backbone

    model = timm.create_model("test_vit", pretrained=False)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    identity = describe_backbone(BackboneConfig(name="timm:test_vit", weights=str(tmp_path / "weights.pth"))).identity
    assert identity["checkpoint_sha256"] == hashlib.sha256((tmp_path / "weights.pth").read_bytes()).hexdigest()

"""Every registered CNN architecture through the protocols a CNN can take (issue 36): kNN and a linear probe on
its pooled features, full fine-tuning (its head sized as extraction sizes it: VGG's 4096-d ConvMlp, not its 512
channels) and a segmentation decoder on its feature stages. One entry per architecture (the DINOv3 ConvNeXts share
one), random weights at 32 px: this checks shapes, not skill."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, tiny_study, write_study
from tests.test_segmentation import shenzhen

CNNS = ["vgg19", "resnet152", "densenet201", "dinov3_convnext_tiny", "xrv_densenet121_all", "xrv_resnet50_all",
        "vitaev2_s"]  # ViTAEv2: convolution + attention stages, pooled like a CNN


def test_the_list_covers_every_registered_cnn_architecture():
    import re

    from radbench.backbones import BACKBONES

    families = {}
    for name in BACKBONES:
        entry = BACKBONES.get(name)
        if entry.family == "xrv" or (entry.family == "timm" and entry.patch is None):
            architecture = (entry.family, re.match(r"[a-z]+", entry.model_id).group(0))
            families.setdefault(architecture, []).append(name)
    covered = {architecture for architecture, names in families.items() if set(names) & set(CNNS)}
    assert covered == set(families), families


@pytest.mark.slow
@pytest.mark.parametrize("name", CNNS)
def test_a_cnn_takes_every_protocol_it_can(tmp_path, shared_data, pneumonia_npz, name):
    import radbench

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 24},
                shenzhen(shared_data)]
    protocols = [{"knn": {"k": [3]}}, {"linear": {"epochs": 1, "lr": [0.01]}},
                 {"finetune": {"epochs": 1, "lr": [1e-4], "batch_size": 8, "augment": None}},
                 {"segmentation": {"epochs": 1, "lr": [1e-3], "batch_size": 3}}]
    study = {**tiny_study(tmp_path, datasets, protocols), "backbones": [{"name": name, "weights": "none"}],
             "batch_size": 8}
    run_cli("run", write_study(tmp_path, study), "--quiet")
    results = radbench.load(tmp_path / "out")
    assert results.status.failed.sum() == 0
    assert set(results.jobs.protocol) == {"knn", "linear", "finetune", "segmentation"}
    scores = results.predictions
    assert scores[scores.protocol == "finetune"].filter(like="score_").notna().all().all()

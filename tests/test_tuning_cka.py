"""CKA between every block before and after fine-tuning (Huix et al., Figs 7-8; issue 36): a study that fine-tunes
with save_model gets the figure and table, and the numbers equal linear CKA computed here from Gram matrices on
the CLS tokens that timm's own forward_intermediates gives for the pretrained and the saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli, tiny_study, write_study


def _gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA through the n x n Gram matrices (Kornblith et al. 2019, eq. 4 with centring by H)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def _cls_per_block(model, pixels: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        intermediates = model.forward_intermediates(pixels, intermediates_only=True, norm=True, output_fmt="NLC",
                                                    return_prefix_tokens=True)
    return [prefix[:, 0].numpy() for _, prefix in intermediates]


@pytest.mark.slow
def test_blocks_before_and_after_fine_tuning(tmp_path, pneumonia_npz, cli):
    import timm

    from radbench.data.transforms import Preprocess
    from radbench.report.patches import _test_images

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    protocols = [{"finetune": {"epochs": 2, "lr": [1e-3], "batch_size": 16, "save_model": True, "augment": None}}]
    run_cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, protocols)), "--quiet")
    result = cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0", "--tuning-images", "12")
    assert result.exit_code == 0, result.stderr[-2000:]
    name = "cka-tuning-p-timm_test_vit-finetune"
    table = pd.read_csv(tmp_path / "out" / "report" / "tables" / f"{name}.csv").set_index("before")
    assert list((tmp_path / "out" / "report" / "figures").glob("cka-tuning-p-*test_vit-finetune.png"))

    import radbench

    job = radbench.load(tmp_path / "out").jobs.iloc[0]
    saved = Path(job.details["saved_model"])
    preprocess = Preprocess.from_identity(job.config["preprocess"])
    pixels = torch.stack([preprocess(image) for image in _test_images(job.config, 12)])
    torch.manual_seed(0)
    before = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32).eval()
    from radbench.backbones import build_backbone
    from radbench.backbones.base import BackboneConfig

    reference = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32).model  # the seeded init
    before.load_state_dict(reference.state_dict())
    after = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32).eval()
    after.load_state_dict(torch.load(saved / "backbone.pt", weights_only=True))
    first, second = _cls_per_block(before, pixels), _cls_per_block(after, pixels)
    expected = np.array([[_gram_cka(x, y) for y in second] for x in first])
    np.testing.assert_allclose(table.to_numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, 1.0)  # fine-tuning moved something
    assert json.loads((saved / "model.json").read_text())["use_as_backbone"]["weights"] == str(saved / "backbone.pt")

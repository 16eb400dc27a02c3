"""save_model: the tested model is written beside the results and reloads, as a study's `weights:`, to exactly the
predictions the job stored; LoRA adapters are merged into the saved weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import radbench
from tests.conftest import tiny_study, write_study


@pytest.mark.parametrize("protocol", ["finetune", "lora"])
def test_a_saved_model_reloads_to_the_stored_predictions(tmp_path, pneumonia_npz, cli, protocol):
    from radbench.backbones import build_backbone
    from radbench.backbones.base import BackboneConfig
    from radbench.data import ADAPTERS, load_dataset
    from radbench.data.transforms import Preprocess

    dataset = {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80}
    body = {"epochs": 1, "lr": [1e-3], "save_model": True, "augment": None}
    if protocol == "lora":
        body.update(rank=4, target_modules=["qkv", "fc1"])
    assert cli("run", write_study(tmp_path, tiny_study(tmp_path, [dataset], [{protocol: body}]))).exit_code == 0
    folder = tmp_path / "out" / "models" / "timm_test_vit" / "p" / protocol / "seed0"
    description = json.loads((folder / "model.json").read_text())
    usage = description["use_as_backbone"]
    assert usage["name"] == "timm:test_vit" and usage["weights"] == str(folder / "backbone.pt")

    results = radbench.load(tmp_path / "out")
    (key,) = results.jobs.key
    _, sample_ids, _, stored = results.store.predictions(key)
    backbone = build_backbone(BackboneConfig(name=usage["name"], weights=usage["weights"]), 32)
    head = torch.nn.Linear(backbone.model.num_features, 2)
    head.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
    preprocess = Preprocess.from_identity(description["preprocess"])
    config = ADAPTERS.get("medmnist").config.model_validate(dataset)
    test = load_dataset(config).splits["test"]
    assert list(test.sample_ids) == list(sample_ids)
    images = torch.stack([preprocess(test.images.load(i)) for i in range(len(test.sample_ids))])
    model = backbone.model.eval()
    with torch.no_grad():
        logits = head(model.forward_head(model.forward_features(images), pre_logits=True))
    np.testing.assert_allclose(logits.softmax(-1).numpy(), stored, atol=1e-5)
    if protocol == "lora":  # merged: a plain timm state dict, no adapter keys
        assert not any("lora" in k for k in torch.load(folder / "backbone.pt", weights_only=True))


def test_a_backbone_trained_for_segmentation_is_saved_for_classification(tmp_path, shared_data, cli):
    """The reverse cross-task direction: segment with the backbone trained, then use it as a study's backbone."""
    lungs = {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
             "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
             "split_fractions": [0.6, 0.2, 0.2]}
    protocol = {"segmentation": {"epochs": 1, "lr": [0.05], "batch_size": 3, "save_model": True,
                                 "backbone": {"train": True, "lr": 1e-2}}}
    assert cli("run", write_study(tmp_path, tiny_study(tmp_path, [lungs], [protocol]))).exit_code == 0
    folder = tmp_path / "out" / "segmentation" / "timm_test_vit" / "lungs" / "segmentation" / "seed0" / "model"
    usage = json.loads((folder / "model.json").read_text())["use_as_backbone"]
    saved = torch.load(folder / "backbone.pt", weights_only=True)
    assert any("blocks" in k for k in saved) and torch.load(folder / "head.pt", weights_only=True)  # + decoder
    reuse = tiny_study(tmp_path / "reuse", [{"name": "p", "adapter": "medmnist", "path": str(
        shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz"), "limit": 60}], [{"knn": {"k": [5]}}])
    reuse["backbones"] = [{"name": usage["name"], "weights": usage["weights"], "label": usage["label"]}]
    assert cli("run", write_study(tmp_path / "reuse", reuse)).exit_code == 0
    assert radbench.load(tmp_path / "reuse" / "out").jobs.backbone.tolist() == ["timm:test_vit+segmentation"]

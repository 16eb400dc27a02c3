"""The appended transformer classifier's scenarios (Foundation-Medical): frozen or trained backbone, a head that
starts from a pretrained DeiT, and decapitation + transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import radbench
from tests.conftest import tiny_study, write_study


@pytest.fixture
def checkpoint(tmp_path):
    import timm

    torch.manual_seed(0)
    path = tmp_path / "vit.pt"
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), path)
    return path


def _run(tmp_path, pneumonia_npz, cli, checkpoint, body: dict):
    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80}],
                       [{"transformer_head": {"epochs": 1, "lr": [1e-3], "depth": 1, "width": 32, "num_heads": 2,
                                              "save_model": True, **body}}])
    study["backbones"] = [{"name": "timm:test_vit", "weights": str(checkpoint), "label": "vit"}]
    result = cli("run", write_study(tmp_path, study))
    assert result.exit_code == 0, result.stderr
    return radbench.load(tmp_path / "out")


@pytest.mark.parametrize("train", [False, True])
def test_the_backbone_trains_only_when_asked(tmp_path, pneumonia_npz, cli, checkpoint, train):
    results = _run(tmp_path, pneumonia_npz, cli, checkpoint, {"backbone": {"train": train, "lr": 1e-3}})
    from radbench.backbones import build_backbone
    from radbench.backbones.base import BackboneConfig

    # the backbone as the study built it (at 32 px its position embeddings are resampled from the checkpoint's)
    original = build_backbone(BackboneConfig(name="timm:test_vit", weights=str(checkpoint)), 32).model.state_dict()
    saved = torch.load(tmp_path / "out/models/vit/p/transformer_head/seed0/backbone.pt", weights_only=True)
    assert set(saved) <= set(original) and len(saved) > 10
    changed = [k for k in saved if not torch.equal(original[k], saved[k])]
    if train:
        assert len(changed) > len(saved) // 2  # the blocks moved
    else:
        assert changed == []  # frozen: bit-identical
    costs = results.costs.set_index("metric").value
    head_params = sum(v.numel() for v in torch.load(tmp_path / "out/models/vit/p/transformer_head/seed0/head.pt",
                                                     weights_only=True).values())
    backbone_params = sum(v.numel() for v in saved.values())
    assert costs["trainable_params"] == head_params + (backbone_params if train else 0)


def test_a_head_started_from_a_deit(tmp_path):
    import timm

    from radbench.training.token_transformer import from_deit

    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=0)
    same = from_deit(deit, 1 + 14 * 14, 64, 3)  # a backbone with one prefix token on DeiT's own 14 x 14 grid
    for ours, theirs in zip(same.blocks.state_dict().values(), deit.blocks.state_dict().values()):
        assert torch.equal(ours, theirs)
    assert torch.equal(same.cls_token, deit.cls_token)
    assert torch.equal(same.pos_embed[:, 2:], deit.pos_embed[:, 1:])  # the grid, unchanged
    assert torch.equal(same.pos_embed[:, 0], deit.pos_embed[:, 0]) and torch.equal(same.pos_embed[:, 1],
                                                                                   deit.pos_embed[:, 0])
    small = from_deit(deit, 1 + 4 * 4, 64, 3)  # a 4 x 4 grid: resampled
    assert small.pos_embed.shape == (1, 2 + 16, deit.embed_dim) and small(torch.randn(2, 17, 64)).shape == (2, 3)


def test_deit_init_from_a_checkpoint_end_to_end(tmp_path, pneumonia_npz, cli, checkpoint):
    import timm

    deit_path = tmp_path / "deit.pt"
    torch.manual_seed(1)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    torch.save(deit.state_dict(), deit_path)
    results = _run(tmp_path, pneumonia_npz, cli, checkpoint,
                   {"init": "deit_tiny_patch16_224", "init_weights": str(deit_path), "epochs": 1})
    details = results.jobs.details.iloc[0]
    assert details["init"] == "deit_tiny_patch16_224", details
    head = torch.load(tmp_path / "out/models/vit/p/transformer_head/seed0/head.pt", weights_only=True)
    assert head["blocks.11.mlp.fc2.weight"].shape == deit.blocks[11].mlp.fc2.weight.shape  # all 12 DeiT blocks


def test_decapitation_with_a_transformer_head_reads_block_k(tmp_path, pneumonia_npz, cli, checkpoint):
    import timm

    results = _run(tmp_path, pneumonia_npz, cli, checkpoint, {"keep_blocks": [2, 4], "save_model": False})
    assert sorted(results.jobs.protocol) == ["transformer_head@2blocks", "transformer_head@4blocks"]
    (cached,) = (tmp_path / "out" / "features").glob("*-tokens/blocks2/test.npy")
    model = timm.create_model("test_vit", pretrained=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.blocks = model.blocks[:2]
    from radbench.data import ADAPTERS, load_dataset
    from radbench.data.transforms import Preprocess

    split = load_dataset(ADAPTERS.get("medmnist").config.model_validate(
        {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80})).splits["test"]
    preprocess = Preprocess(32, "resize", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    images = torch.stack([preprocess(split.images.load(i)) for i in range(len(split.sample_ids))])
    with torch.no_grad():
        expected = model.eval().forward_features(images).numpy()
    np.testing.assert_allclose(np.load(cached).astype(np.float32), expected, atol=2e-2, rtol=1e-2)  # float16 cache


def test_decapitated_and_fine_tuned_with_a_transformer_head(tmp_path, pneumonia_npz, cli, checkpoint):
    results = _run(tmp_path, pneumonia_npz, cli, checkpoint, {"keep_blocks": [2], "backbone": {"train": True}})
    folder = tmp_path / "out/models/vit/p/transformer_head@2blocks/seed0"
    saved = torch.load(folder / "backbone.pt", weights_only=True)
    assert {k.split(".")[1] for k in saved if k.startswith("blocks.")} == {"0", "1"}  # cut after block 2
    head = sum(v.numel() for v in torch.load(folder / "head.pt", weights_only=True).values())
    costs = results.costs.set_index("metric").value
    assert costs["trainable_params"] == head + sum(v.numel() for v in saved.values())

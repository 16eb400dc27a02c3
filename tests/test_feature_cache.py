"""The feature cache: one extraction serves every protocol and seed; keys follow content; crashes keep work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radbench.config import parse_study
from radbench.progress import Reporter
from radbench.runner import run_study
from tests.conftest import tiny_study


def study_for(tmp_path, pneumonia_npz, **settings):
    datasets = [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80}]
    raw = tiny_study(tmp_path, datasets, **settings)
    return parse_study(raw, base_dir=tmp_path)


def cache_folders(tmp_path):
    return sorted(p.name for p in (tmp_path / "out" / "features").iterdir() if not p.name.startswith("."))


def test_cache_layout_and_contents(tmp_path, pneumonia_npz):
    study = study_for(tmp_path, pneumonia_npz)
    summary = run_study(study, Reporter(quiet=True))
    assert [e.split for e in summary.extractions] == ["train", "val", "test"]
    (folder_name,) = cache_folders(tmp_path)
    folder = tmp_path / "out" / "features" / folder_name
    assert folder_name.endswith("-L1") and len(folder_name.split("-")[0]) == 16  # content hash + layout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["splits"]["train"]["n"] == 80
    assert manifest["preprocess"]["image_size"] == 32 and manifest["preprocess"]["mode"] == "resize"
    train = np.load(folder / "train.npy", mmap_mode="r")
    assert isinstance(train, np.memmap) and train.dtype == np.float16 and train.shape == (80, 128)
    assert not list(folder.glob(".*"))  # no temporary files left behind

    # the cached rows equal a direct forward pass of the same images
    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.data import load_dataset
    from radbench.data.transforms import Preprocess

    dataset = load_dataset(study.datasets[0])
    backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    preprocess = Preprocess(32, "resize", (0.5,) * 3, (0.5,) * 3, "bicubic")
    images = torch.stack([preprocess(dataset.splits["train"].images.load(i)) for i in range(5)])
    with torch.no_grad():
        direct = backbone.forward_bundle(images, backbone.layout(1)).numpy()
    np.testing.assert_allclose(train[:5].astype(np.float32), direct, rtol=2e-3, atol=2e-3)


def test_key_changes_with_what_changes_the_numbers(tmp_path, pneumonia_npz):
    run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, image_size=48), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, resize="pad"), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, cache_dtype="float32"), Reporter(quiet=True))
    assert len({name.split("-")[0] for name in cache_folders(tmp_path)}) == 4
    # renaming the study or adding a protocol changes no number: nothing is extracted
    again = run_study(study_for(tmp_path, pneumonia_npz, name="renamed", protocols=[{"knn": {"k": [3]}}]),
                      Reporter(quiet=True))
    assert again.extractions == [] and again.jobs_run == 1


def test_more_blocks_extend_the_cache_and_fewer_reuse_it(tmp_path, pneumonia_npz):
    run_study(study_for(tmp_path, pneumonia_npz, features=["cls", "last3+mean"]), Reporter(quiet=True))
    assert cache_folders(tmp_path)[0].endswith("-L3")
    fewer = run_study(study_for(tmp_path, pneumonia_npz, features=["mean", "last2"]), Reporter(quiet=True))
    assert fewer.extractions == [] and fewer.jobs_run == 3


def test_interrupted_extraction_keeps_finished_splits(tmp_path, pneumonia_npz, monkeypatch):
    import radbench.features.provider as provider

    real = provider.extract_bundle
    calls = []

    def crash_on_val(*args, **kwargs):
        calls.append(kwargs["description"])
        if kwargs["description"].endswith("/ val"):
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the val split
        return real(*args, **kwargs)

    monkeypatch.setattr(provider, "extract_bundle", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    (folder,) = (tmp_path / "out" / "features").iterdir()
    assert (folder / "train.npy").exists() and not (folder / "manifest.json").exists()
    monkeypatch.setattr(provider, "extract_bundle", real)
    summary = run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    assert [e.split for e in summary.extractions] == ["val", "test"]
    assert (folder / "manifest.json").exists() and summary.jobs_run == 3

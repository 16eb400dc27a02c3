"""Segmentation decoders must use the image, and their selection must not see the test split.

The data: Shenzhen CXRs and their lung masks at 64 px, each moved four times together at random (shift up to a
quarter of the image, horizontal flip), so that the average training mask is uninformative: a decoder can only
beat it by reading the image. Variants of one radiograph are one patient, so they stay in one split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from radbench.config import parse_study
from radbench.progress import Reporter
from radbench.results import ResultsStore
from radbench.runner import run_study
from tests.conftest import tiny_study

SIZE = 64


@pytest.fixture(scope="module")
def shifted_lungs(tmp_path_factory, shared_data):
    from PIL import Image

    root = tmp_path_factory.mktemp("shifted")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    source = shared_data / "cxr_lung_seg_shenzhen"
    for path in sorted((source / "train_images").glob("*.png")):
        image = np.asarray(Image.open(path).convert("L").resize((SIZE, SIZE), Image.BILINEAR))
        mask = np.asarray(Image.open(source / "train_masks" / f"{path.stem}_mask.png").convert("L")
                          .resize((SIZE, SIZE), Image.NEAREST)) > 127
        for variant in range(4):
            dy, dx = rng.integers(-SIZE // 4, SIZE // 4 + 1, 2)
            moved_image, moved_mask = np.roll(image, (dy, dx), (0, 1)), np.roll(mask, (dy, dx), (0, 1))
            if rng.random() < 0.5:
                moved_image, moved_mask = moved_image[:, ::-1], moved_mask[:, ::-1]
            name = f"{path.stem}_v{variant}.png"
            Image.fromarray(np.ascontiguousarray(moved_image)).save(root / "images" / name)
            Image.fromarray(np.ascontiguousarray(moved_mask).astype(np.uint8) * 255).save(root / "masks" / name)
    return root


def dataset(path):
    return {"name": "shifted", "adapter": "mask_folder", "path": str(path), "mask_threshold": 127,
            "patient_regex": r"(CHNCXR_\d+)", "split_fractions": [0.6, 0.2, 0.2]}


def _mask(path):
    from PIL import Image

    return np.asarray(Image.open(path)) > 127


def test_decoders_beat_the_mean_shape_prior(tmp_path, shifted_lungs):
    protocols = [{"segmentation": {"decoder": "linear", "epochs": 15, "lr": [0.01, 0.1], "batch_size": 8}},
                 {"segmentation": {"name": "unet", "decoder": "unet", "epochs": 15, "lr": [1e-3, 1e-2],
                                   "batch_size": 8, "width": 16}}]
    run_study(parse_study(tiny_study(tmp_path, [dataset(shifted_lungs)], protocols, image_size=SIZE), tmp_path),
              Reporter(quiet=True))
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    test_ids = set(store.sample_metrics().sample_id)
    assert len(test_ids) == 8
    # the image-free baseline, given train and val masks: their mean, thresholded at 0.5
    others = [p for p in sorted((shifted_lungs / "masks").glob("*.png")) if p.stem not in test_ids]
    prior = np.mean([_mask(p) for p in others], axis=0) >= 0.5
    truths = [_mask(shifted_lungs / "masks" / f"{sample}.png") for sample in sorted(test_ids)]
    prior_dice = np.mean([2 * (prior & t).sum() / (prior.sum() + t.sum()) for t in truths])
    dice = store.metrics("test").query("metric == 'dice'").set_index("protocol")["value"]
    # measured here: prior 0.20, linear decoder on a random-init test_vit 0.56, U-Net 0.82
    assert dice["segmentation"] > prior_dice + 0.15, (dice.to_dict(), prior_dice)
    assert dice["unet"] > prior_dice + 0.3, (dice.to_dict(), prior_dice)


def test_segmentation_selection_ignores_the_test_split(tmp_path, shifted_lungs):
    """A copy whose test images are noise and whose test masks are swapped between cases chooses the same lr from
    the same val Dice scores."""
    from PIL import Image

    protocols = [{"segmentation": {"decoder": "linear", "epochs": 3, "lr": [0.01, 0.1], "batch_size": 8}}]

    def run(folder, path):
        run_study(parse_study(tiny_study(folder, [dataset(path)], protocols, image_size=SIZE), folder),
                  Reporter(quiet=True))
        store = ResultsStore(folder / "out" / "results.sqlite")
        jobs = store.jobs()
        candidates = json.loads(jobs.candidates.iloc[0])
        for candidate in candidates:
            candidate["history"] = [{k: v for k, v in e.items() if not k.endswith("_seconds")}
                                    for e in candidate["history"]]
        val = store.metrics("val")
        return candidates, jobs.selected.iloc[0], val.value.tolist(), set(store.sample_metrics().sample_id)

    clean = run(tmp_path / "clean", shifted_lungs)
    noisy_data = tmp_path / "noisy-data"
    shutil.copytree(shifted_lungs, noisy_data)
    rng = np.random.default_rng(1)
    test_ids = sorted(clean[3])
    masks = [(noisy_data / "masks" / f"{s}.png").read_bytes() for s in test_ids]
    for sample, swapped in zip(test_ids, masks[1:] + masks[:1]):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8)).save(noisy_data / "images" / f"{sample}.png")
        (noisy_data / "masks" / f"{sample}.png").write_bytes(swapped)
    noisy = run(tmp_path / "noisy", noisy_data)
    assert noisy[3] == clean[3]  # the same cases are the test split
    assert len(clean[0]) == 2 and noisy[:3] == clean[:3]


def _collapse_refits(monkeypatch):
    """Every refit (training without val) ends predicting background everywhere — the collapsed U-Net refit of
    issue 37 (test Dice 0.0), made certain: the decoder's last layer zeroed, its bias set for background."""
    import torch

    from radbench.training import loop

    real = loop.train

    def train(model, groups, data, loss_fn, settings, reporter, description, validate=None, stop_after=None):
        result = real(model, groups, data, loss_fn, settings, reporter, description, validate, stop_after)
        if validate is None:
            last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            with torch.no_grad():
                last.weight.zero_()
                last.bias.copy_(torch.tensor([10.0] + [-10.0] * (last.bias.numel() - 1)))
        return result

    monkeypatch.setattr(loop, "train", train)


@pytest.mark.parametrize("guarded", [True, False])
def test_a_collapsed_refit_falls_back_to_the_selected_run(tmp_path, shifted_lungs, monkeypatch, guarded):
    """With the guard, the selected run's model is tested (a Dice well above 0) and the job and page say why; with
    the guard switched off, the same collapsed refit is tested and scores about 0: the test sees the difference."""
    from radbench.report.build import build_report
    from radbench.training import select

    _collapse_refits(monkeypatch)
    if not guarded:
        monkeypatch.setattr(select, "collapsed", lambda refit, selected: False)
    protocols = [{"segmentation": {"decoder": "linear", "epochs": 6, "lr": [0.01, 0.1], "batch_size": 8}}]
    run_study(parse_study(tiny_study(tmp_path, [dataset(shifted_lungs)], protocols, image_size=SIZE), tmp_path),
              Reporter(quiet=True))
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    dice = store.metrics("test").query("metric == 'dice'").value.iloc[0]
    details = json.loads(store.jobs().details.iloc[0])
    if not guarded:
        assert dice < 0.05 and "refit_fallback" not in details
        return
    assert dice > 0.3, dice
    assert details["hd95_unit"] == "px"  # a 2D mask: distances in its pixels
    assert "collapsed" in details["refit_fallback"] and "trained on train" in details["refit_fallback"]
    chosen = next(c for c in json.loads(store.jobs().candidates.iloc[0]) if "refit_val" in c)
    assert chosen["refit_val"] < 0.05
    page = build_report(tmp_path / "out", tmp_path / "report", resamples=50, patch_images=0)[0].read_text()
    assert "refit collapsed" in page

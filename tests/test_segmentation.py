"""Segmentation: decoders on real Shenzhen lungs and real 3D volumes, metrics against MONAI, geometry."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from radbench.config import parse_study
from radbench.metrics.segmentation import case_metrics, dice_iou, hd95
from radbench.progress import Reporter
from radbench.results import ResultsStore
from radbench.runner import run_study
from tests.conftest import run_cli, tiny_study, write_study


def shenzhen(shared_data, **extra):
    return {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
            "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
            "split_fractions": [0.6, 0.2, 0.2], **extra}


def test_decoders_on_real_lung_masks_beat_trivial_predictions(tmp_path, shared_data):
    protocols = [{"segmentation": {"decoder": "linear", "epochs": 10, "lr": [0.01, 0.1], "batch_size": 3}},
                 {"segmentation": {"name": "unet", "decoder": "unet", "epochs": 10, "lr": [1e-3], "batch_size": 3,
                                   "width": 32}}]
    study = parse_study(tiny_study(tmp_path, [shenzhen(shared_data)], protocols, image_size=64), tmp_path)
    assert run_study(study, Reporter(quiet=True)).jobs_run == 2
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    metrics = store.metrics("test")
    samples = store.sample_metrics()
    for protocol in ("segmentation", "unet"):
        dice = metrics.query(f"protocol == '{protocol}' and metric == 'dice'")["value"].item()
        # all-background scores 0; all-lung scores 2|G| / (|G| + N), about 0.45 on these CXRs
        assert dice > 0.5, (protocol, dice)
        per_case = samples.query(f"protocol == '{protocol}' and metric == 'dice'")["value"]
        assert len(per_case) == 2 and per_case.mean() == pytest.approx(dice)
        for cost in ("trainable_params", "total_params", "train_seconds", "infer_ms_per_image"):
            assert metrics.query(f"protocol == '{protocol}' and metric == '{cost}'")["value"].item() > 0
    overlays = sorted((tmp_path / "out" / "segmentation").rglob("*.png"))
    assert len(overlays) == 4  # 2 test images x 2 protocols


def test_frozen_feature_maps_cached_or_recomputed(tmp_path, shared_data):
    """Within the disk budget the frozen taps are computed once; over it, every epoch recomputes them."""
    def details(folder, budget):
        protocols = [{"segmentation": {"epochs": 2, "lr": [0.05], "batch_size": 3, "feature_cache_gb": budget}}]
        run_study(parse_study(tiny_study(folder, [shenzhen(shared_data)], protocols, image_size=64), folder),
                  Reporter(quiet=True))
        return ResultsStore(folder / "out" / "results.sqlite").jobs()["details"].item()

    assert "CachedTapSamples" not in details(tmp_path / "live", 0)
    assert not list((tmp_path / "live" / "out" / "features").glob("*-seg/seg-*/tap0.npy"))
    assert "CachedTapSamples" in details(tmp_path / "cached", 4)
    assert list((tmp_path / "cached" / "out" / "features").glob("*-seg/seg-*/tap0.npy"))


def masks(shape, seed, classes=3):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 3)
    return np.digitize(field, np.quantile(field, np.linspace(0.5, 0.9, classes - 1)))


@pytest.mark.parametrize("shape, spacing", [((48, 40), (0.7, 1.3)), ((24, 32, 20), (3.0, 0.8, 0.8))])
def test_metrics_equal_monai(shape, spacing):
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

    def onehot(labels, classes):
        return torch.nn.functional.one_hot(torch.from_numpy(labels), classes).movedim(-1, 0)[None].float()

    for seed in range(3):
        target, prediction = masks(shape, seed, 4), masks(shape, seed + 10, 4)
        prediction[prediction == 3] = 0  # class 3 never predicted: Dice 0, HD95 undefined in MONAI (NaN)
        dice, iou = dice_iou(prediction, target, 4)
        np.testing.assert_allclose(dice, compute_dice(onehot(prediction, 4), onehot(target, 4),
                                                      include_background=False)[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(iou, compute_iou(onehot(prediction, 4), onehot(target, 4),
                                                    include_background=False)[0].numpy(), rtol=1e-6)
        ours = hd95(prediction, target, 4, spacing)
        reference = compute_hausdorff_distance(onehot(prediction, 4), onehot(target, 4), percentile=95,
                                               spacing=list(spacing))[0].numpy()
        np.testing.assert_allclose(ours[:2], reference[:2], rtol=1e-5)
        diagonal = np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
        assert np.isnan(reference[2]) and ours[2] == pytest.approx(diagonal)  # our choice where MONAI has NaN
    empty = case_metrics(np.zeros(shape, int), np.zeros(shape, int), ("bg", "a"))
    assert np.isnan(empty["dice"]) and np.isnan(empty["hd95"])  # a class absent from the truth is left out


@pytest.mark.parametrize("case", ["truth empty, prediction not", "prediction empty, truth not", "both empty"])
def test_empty_masks_follow_monai(case):
    """Class 1 absent from one mask or both: Dice and IoU as MONAI's (ignore_empty: NaN where the truth lacks the
    class, whatever was predicted; 0 where it was never predicted); HD95 NaN where the truth is empty, the image
    diagonal (documented) where MONAI gives NaN for a never-predicted class. Class 2 overlaps in every case."""
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

    shape, spacing = (30, 24), (0.8, 1.5)
    target, prediction = np.zeros(shape, int), np.zeros(shape, int)
    target[18:26, 4:14] = prediction[17:25, 5:15] = 2
    if case != "prediction empty, truth not":
        prediction[3:9, 3:12] = 1 if case == "truth empty, prediction not" else 0
    if case == "prediction empty, truth not":
        target[4:10, 2:9] = 1
    onehot = [torch.nn.functional.one_hot(torch.from_numpy(m), 3).movedim(-1, 0)[None].float()
              for m in (prediction, target)]
    metrics = case_metrics(prediction, target, ("bg", "a", "b"), spacing)
    for name, reference in (("dice", compute_dice(*onehot, include_background=False)),
                            ("iou", compute_iou(*onehot, include_background=False))):
        np.testing.assert_allclose([metrics[f"{name}/a"], metrics[f"{name}/b"]], reference[0].numpy(), rtol=1e-6)
    assert metrics["dice/b"] > 0.5
    distance = compute_hausdorff_distance(*onehot, percentile=95, spacing=list(spacing))[0].numpy()
    assert metrics["hd95/b"] == pytest.approx(distance[1], rel=1e-5)
    if case == "prediction empty, truth not":
        assert metrics["dice/a"] == 0.0 and np.isnan(distance[0])
        assert metrics["hd95/a"] == pytest.approx(np.hypot(30 * 0.8, 24 * 1.5))
    else:  # the truth lacks class a: every metric of a is left out, and the means are class b's alone
        assert np.isnan(metrics["dice/a"]) and np.isnan(metrics["iou/a"]) and np.isnan(metrics["hd95/a"])
        assert metrics["dice"] == metrics["dice/b"] and metrics["hd95"] == metrics["hd95/b"]


def volume_layout(tmp_path, cases, labels, name="data"):
    root = tmp_path / name
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for k, (image, label) in enumerate(cases):
        (root / "imagesTr" / f"case{k}.nii.gz").symlink_to(image)
        (root / "labelsTr" / f"case{k}.nii.gz").symlink_to(label)
        training.append({"image": f"./imagesTr/case{k}.nii.gz", "label": f"./labelsTr/case{k}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "training": training}))
    return root


def test_3d_brain_tumours_per_volume_with_geometry_round_trip(tmp_path, shared_data, cli):
    cases = shared_data / "ct_mri_seg_samples"
    pairs = [(c / "Flair_subtrMeanDivStd.nii.gz", c / "OTMultiClass.nii.gz")
             for c in sorted((cases / "brats2013_deepmedic").iterdir())]
    pairs.append((cases / "brats2021_sammed3d" / "imagesTr" / "BraTS2021_01646.nii.gz",
                  cases / "brats2021_sammed3d" / "labelsTr" / "BraTS2021_01646.nii.gz"))
    root = volume_layout(tmp_path, pairs, {"0": "background", "1": "tumour"})
    dataset = {"name": "brain", "adapter": "decathlon", "path": str(root), "split_fractions": [0.34, 0.33, 0.33],
               "mask_values": {0: 0, 1: 1, 2: 1, 3: 1, 4: 1}, "volume": {"slices": "every", "every": 4}}
    protocols = [{"segmentation": {"epochs": 3, "lr": [0.01], "batch_size": 16, "save_predictions": True}}]
    run_study(parse_study(tiny_study(tmp_path, [dataset], protocols, image_size=64), tmp_path), Reporter(quiet=True))
    store = ResultsStore(tmp_path / "out" / "results.sqlite")
    metrics = store.metrics("test").set_index("metric")["value"]
    assert metrics["cases"] == 1 and 0 <= metrics["dice"] <= 1 and metrics["hd95"] > 0
    test_case = store.sample_metrics()["sample_id"].iloc[0]
    saved = nib.load(next((tmp_path / "out").rglob(f"{test_case}.nii.gz")))
    source = nib.load(root / "imagesTr" / f"{test_case}.nii.gz")
    assert saved.shape == source.shape
    np.testing.assert_array_equal(saved.affine, source.affine)
    assert set(np.unique(np.asarray(saved.dataobj))) <= {0, 1}

    assert cli("report", tmp_path / "out", "--resamples", "100").exit_code == 0  # scores per volume, overlays
    assert (tmp_path / "out" / "report" / "figures" / "dice-per-volume-brain.png").is_file()
    assert 'alt="timm:test_vit / segmentation / ' in (tmp_path / "out" / "report" / "index.html").read_text()


def test_3d_multi_organ_ct_scores_each_organ(tmp_path, shared_data):
    """The TotalSegmentator CT with its organ masks (three links to the one case: a pipeline check, not a
    generalisation test), organs merged into liver / spleen / kidneys."""
    folder = shared_data / "ct_mri_seg_samples" / "totalsegmentator_examples"
    pairs = [(folder / "example_ct_sm.nii.gz", folder / "example_seg.nii.gz")] * 3
    root = volume_layout(tmp_path, pairs, {"0": "background", "1": "liver", "2": "spleen", "3": "kidneys"})
    values = {i: 0 for i in range(118)} | {5: 1, 1: 2, 2: 3, 3: 3}  # "total" task ids (label_map.json)
    dataset = {"name": "ct", "adapter": "decathlon", "path": str(root), "split_fractions": [0.34, 0.33, 0.33],
               "mask_values": values, "intensity": {"window": "abdomen"}, "volume": {"axis": "axial"}}
    protocols = [{"segmentation": {"epochs": 2, "lr": [0.05], "batch_size": 16}}]
    run_study(parse_study(tiny_study(tmp_path, [dataset], protocols, image_size=64), tmp_path), Reporter(quiet=True))
    metrics = ResultsStore(tmp_path / "out" / "results.sqlite").metrics("test").set_index("metric")["value"]
    for organ in ("liver", "spleen", "kidneys"):
        assert f"dice/{organ}" in metrics and f"hd95/{organ}" in metrics


def test_segmentation_errors(tmp_path, shared_data, cli):
    # an anti-aliased mask read without a threshold has values outside the classes
    raw = tiny_study(tmp_path, [shenzhen(shared_data, mask_threshold=None)],
                     [{"segmentation": {"epochs": 1, "lr": [0.1], "batch_size": 3}}], image_size=64)
    result = cli("run", write_study(tmp_path, raw))
    assert result.exit_code == 2 and "_mask.png: mask value" in result.stderr and "mask_threshold" in result.stderr
    # a segmentation protocol needs a segmentation dataset
    wrong = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist",
                                   "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}],
                       [{"segmentation": {}}])
    result = cli("run", write_study(tmp_path, wrong, "wrong.yaml"))
    assert result.exit_code == 2 and "'segmentation' needs a segmentation dataset" in result.stderr


def test_ignored_pixels_are_left_out_of_metrics_and_loss():
    from radbench.segmentation.decoders import dice_ce_loss

    target = np.zeros((20, 20), int)
    target[5:15, 5:15] = 1
    prediction = target.copy()
    prediction[0:3, 0:3] = 1  # a false positive ...
    with_ignore = target.copy()
    with_ignore[0:3, 0:3] = -1  # ... inside an ignored region
    assert dice_iou(prediction, target, 2)[0][0] < 1
    assert dice_iou(prediction, with_ignore, 2)[0][0] == 1
    assert hd95(prediction, with_ignore, 2)[0] == 0
    logits = torch.randn(1, 2, 20, 20, requires_grad=True)
    dice_ce_loss(logits, torch.from_numpy(with_ignore)[None]).backward()
    assert logits.grad[0, :, 0:3, 0:3].abs().sum() == 0 and logits.grad[0, :, 10, 10].abs().sum() > 0


def test_backbone_trains_only_when_asked(shared_data):
    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.segmentation.decoders import LinearDecoder, Segmenter, dense_taps, dice_ce_loss, tap_indices

    backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    images, masks = torch.randn(4, 3, 32, 32), torch.randint(0, 2, (4, 32, 32))
    indices = tap_indices(backbone.model, 1)
    channels = [t.shape[1] for t in dense_taps(backbone.model, images[:1], indices)]
    for train_backbone in (False, True):
        import copy

        trunk = copy.deepcopy(backbone.model)
        before = {k: v.clone() for k, v in trunk.state_dict().items()}
        model = Segmenter(trunk, LinearDecoder(channels, 2), indices, train_backbone)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        dice_ce_loss(model(images), masks).backward()
        optimizer.step()
        changed = any(not torch.equal(before[k], v) for k, v in trunk.state_dict().items())
        assert changed == train_backbone


def test_protocol_image_size_overrides_the_study(tmp_path, shared_data):
    protocols = [{"segmentation": {"epochs": 1, "lr": [0.05], "batch_size": 3, "image_size": 96, "overlays": 0}}]
    run_study(parse_study(tiny_study(tmp_path, [shenzhen(shared_data)], protocols, image_size=64), tmp_path),
              Reporter(quiet=True))
    details = json.loads(ResultsStore(tmp_path / "out" / "results.sqlite").jobs()["details"].item())
    assert details["image_size"] == 96 and details["taps"] == [5]
    cached = sorted(np.load(p, mmap_mode="r").shape[1] for p in (tmp_path / "out").rglob("preprocessed/*/train.npy"))
    assert cached == [64, 96]  # images decoded at 96 px for this protocol, not upsampled from the study's 64


def test_results_samples_csv(tmp_path, shared_data, cli):
    import io

    import pandas as pd

    raw = tiny_study(tmp_path, [shenzhen(shared_data)], [{"segmentation": {"epochs": 1, "lr": [0.05], "batch_size": 3,
                                                                           "overlays": 0}}], image_size=64)
    assert cli("run", write_study(tmp_path, raw)).exit_code == 0
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "out", "--samples").stdout))
    assert {"sample_id", "metric", "value"} <= set(rows.columns)
    assert set(rows.metric) >= {"dice", "iou", "hd95", "dice/foreground"} and rows.sample_id.nunique() == 2
    assert "dice" in cli("results", tmp_path / "out").stdout


def test_pooled_dice_and_the_dice_jaccard_mean_against_a_direct_count():
    """dice_pooled: one Dice over every pixel of the split (concatenated), per class, then the mean over classes
    present in the split; dice_jaccard_mean: per case (Dice + IoU) / 2, averaged over cases."""
    from radbench.metrics.segmentation import case_metrics, mean_over_cases

    rng = np.random.default_rng(4)
    names = ("background", "lung", "heart")
    targets = [rng.integers(0, 3, (20, 20)), rng.integers(0, 2, (40, 30)), np.zeros((10, 10), int)]
    predictions = [np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 3, t.shape)) for t in targets]
    cases = [case_metrics(p, t, names, distances=False) for p, t in zip(predictions, targets)]
    summary = mean_over_cases(cases)
    flat_true = np.concatenate([t.ravel() for t in targets])
    flat_pred = np.concatenate([p.ravel() for p in predictions])
    pooled = [2 * np.sum((flat_true == c) & (flat_pred == c)) / (np.sum(flat_true == c) + np.sum(flat_pred == c))
              for c in (1, 2)]
    assert summary["dice_pooled"] == pytest.approx(np.mean(pooled), abs=1e-12)
    assert summary["dice_pooled"] != pytest.approx(summary["dice"], abs=1e-3)  # the two ways differ here
    per_case = [(c["dice"] + c["iou"]) / 2 for c in cases if np.isfinite(c["dice"])]
    assert summary["dice_jaccard_mean"] == pytest.approx(np.mean(per_case), abs=1e-12)
    assert not any(key.startswith("pixels_") for key in summary)


def test_transunet_is_the_hybrid_encoder_with_a_cascaded_upsampler():
    """One ResNet pass serves the skips and the ViT: its tokens equal timm's own forward_features; the logits come
    back at the image's size; at full size it has the paper's ~105M parameters."""
    import torch

    from radbench.segmentation.transunet import TransUNet

    torch.manual_seed(0)
    model = TransUNet(3, 64, depth=1, embed_dim=64, num_heads=2).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, maps = model.tokens(images)
        reference = model.encoder.forward_features(images)[:, model.encoder.num_prefix_tokens:]
        torch.testing.assert_close(tokens, reference)
        assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]  # 1/2, 1/4, 1/8, 1/16: the skips and the ViT's grid
        assert model(images).shape == (2, 3, 64, 64)
    with torch.device("meta"):
        full = TransUNet(2, 224)
    assert 100e6 < sum(p.numel() for p in full.parameters()) < 110e6


@pytest.mark.slow
def test_transunet_trains_on_real_lung_masks_as_a_row_of_its_own(tmp_path, shared_data):
    import radbench

    protocols = [{"segmentation": {"name": "transunet", "decoder": "transunet", "epochs": 2, "lr": [1e-3],
                                   "batch_size": 3, "encoder_kwargs": {"depth": 1, "embed_dim": 64, "num_heads": 2}}}]
    study = write_study(tmp_path, {**tiny_study(tmp_path, [shenzhen(shared_data)], protocols), "image_size": 64})
    run_cli("run", study, "--quiet")
    results = radbench.load(tmp_path / "out")
    job = results.jobs.iloc[0]
    assert (job.backbone, job.protocol) == ("transunet", "transunet")
    assert job.config["backbone"]["identity"] == {"model": "TransUNet (R50 + ViT, timm)", "weights": "none"}
    dice = results.results.query("metric == 'dice'").value.iloc[0]
    assert 0.0 <= dice <= 1.0

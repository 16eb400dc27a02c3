"""3D volumes through 2D backbones (slices, 2.5D, aggregation) and the preprocessing cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from radbench.config import parse_study
from radbench.data.readers.volume import Volume
from radbench.data.volumes import VolumeConfig, oriented_stack, resample, sample_indices, slice_images
from radbench.progress import Reporter
from radbench.runner import run_study
from tests.conftest import tiny_study


def synthetic_volume():
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) / 120.0
    return Volume(array, (2.0, 1.0, 0.5), np.eye(4), (6, 5, 4), np.array([[0, 1], [1, 1], [2, 1]]))


def test_slice_sampling_axes_and_context():
    volume = synthetic_volume()
    assert [s.shape for s in slice_images(volume, VolumeConfig())] == [(5, 6)] * 4
    assert len(slice_images(volume, VolumeConfig(axis="coronal"))) == 5
    assert slice_images(volume, VolumeConfig(axis="sagittal"))[0].shape == (4, 5)
    np.testing.assert_array_equal(oriented_stack(volume.array, "coronal")[2][0], volume.array[-1, 2])  # superior on top
    assert list(sample_indices(10, VolumeConfig(slices="every", every=3))) == [0, 3, 6, 9]
    assert list(sample_indices(10, VolumeConfig(slices="central", central_fraction=0.4))) == [3, 4, 5, 6]
    context = slice_images(volume, VolumeConfig(context="2.5d"))
    assert context[0].shape == (5, 6, 3)
    np.testing.assert_array_equal(context[2][..., 0], volume.array[1])  # channels = slices k-1, k, k+1
    np.testing.assert_array_equal(context[2][..., 2], volume.array[3])
    np.testing.assert_array_equal(context[0][..., 0], volume.array[0])  # edge repeated
    assert resample(volume, (1.0, 1.0, 1.0)).array.shape == (8, 5, 3)


def test_3d_medmnist_aggregation_shapes(tmp_path, shared_data):
    datasets = [{"name": "adrenal", "adapter": "medmnist", "path": str(shared_data / "medmnist" / "adrenalmnist3d.npz"),
                 "limit": 40, "volume": {"slices": "every", "every": 4, "context": "2.5d", "aggregate": "mean+max"}}]
    study = parse_study(tiny_study(tmp_path, datasets, [{"knn": {"k": [5]}}, {"linear": {"epochs": 2, "lr": [0.1]}}],
                                   features=["cls", "cls+mean"]), tmp_path)
    summary = run_study(study, Reporter(quiet=True))
    assert summary.jobs_run == 2 and [e.images for e in summary.extractions] == [40, 40, 40]  # one row per volume
    (folder,) = (tmp_path / "out" / "features").glob("*-L1")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["layout"] == {"kind": "tokens", "dim": 64, "n_last": 1, "parts": 2, "depth": 6}
    assert np.load(folder / "train.npy").shape == (40, 2 * 2 * 64)  # (cls, mean) x (mean, max over slices)


def test_nifti_volumes_through_the_csv_adapter(tmp_path, shared_data):
    """Real CT and MR volumes (NIfTI and NRRD) classified by modality: each volume slice-embedded and averaged."""
    cases = shared_data / "ct_mri_seg_samples"
    ct = cases / "totalsegmentator_examples" / "example_ct_sm.nii.gz"
    for k in range(3):  # the only CT here, under three names, so that every split has one
        shutil.copy(ct, tmp_path / f"ct_{k}.nii.gz")
    mr = [cases / "totalsegmentator_examples" / "example_mr_sm.nii.gz",
          *sorted((cases / "pyradiomics_testcases").glob("brain*_image.nrrd")),
          *sorted((cases / "brats2013_deepmedic").glob("*/Flair_subtrMeanDivStd.nii.gz"))]
    rows = [(tmp_path / f"ct_{k}.nii.gz", "ct", split) for k, split in enumerate(["train", "val", "test"])]
    rows += [(path, "mr", split) for path, split in zip(mr, ["train", "train", "val", "test", "train"])]
    pd.DataFrame(rows, columns=["path", "modality", "split"]).to_csv(tmp_path / "volumes.csv", index=False)
    dataset = {"name": "modality", "adapter": "csv", "path": str(tmp_path / "volumes.csv"), "label_columns": ["modality"],
               "split_column": "split", "volume": {"slices": "central", "central_fraction": 0.2}}
    study = parse_study(tiny_study(tmp_path, [dataset], [{"knn": {"k": [1]}}]), tmp_path)
    summary = run_study(study, Reporter(quiet=True))
    assert summary.jobs_run == 1 and sum(e.images for e in summary.extractions) == len(rows)


def png_dataset(tmp_path, nih_labels, corrupt: int = 0):
    table = pd.read_csv(nih_labels)
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name in table["Image Index"]:
        (images / name).symlink_to(nih_labels.parent / name)
    for name in table["Image Index"][:corrupt]:
        (images / name).unlink()
        (images / name).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    table.to_csv(images / "labels.csv", index=False)
    return {"name": "nih", "adapter": "csv", "path": str(images / "labels.csv"), "image_column": "Image Index",
            "label_columns": ["Effusion", "Infiltration"], "patient_column": "Patient ID"}


def test_preprocessing_cache_is_built_once_and_matches(tmp_path, nih_labels):
    dataset = png_dataset(tmp_path, nih_labels)
    cached = run_study(parse_study(tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}]), tmp_path), Reporter(quiet=True))
    (folder,) = (tmp_path / "out" / "features" / "preprocessed").iterdir()
    (features_cached,) = (tmp_path / "out" / "features").glob("*-L1")
    train = np.load(folder / "train.npy", mmap_mode="r")
    assert train.dtype == np.uint8 and train.shape[1:] == (32, 32)
    # a second backbone at the same size reuses the decoded images; the cache is not rebuilt
    mtime = (folder / "train.npy").stat().st_mtime_ns
    two = tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}])
    two["backbones"].append({"name": "timm:test_vit", "weights": "none", "label": "vit-again", "mean": [0.4] * 3})
    run_study(parse_study(two, tmp_path), Reporter(quiet=True))
    assert (folder / "train.npy").stat().st_mtime_ns == mtime
    # features from the cache equal features decoded on the fly, to uint8 rounding
    direct = tiny_study(tmp_path / "direct", [dataset], [{"knn": {"k": [3]}}], preprocess_cache="off")
    run_study(parse_study(direct, tmp_path), Reporter(quiet=True))
    (direct_features,) = (tmp_path / "direct" / "out" / "features").glob("*-L1")
    np.testing.assert_allclose(np.load(features_cached / "test.npy").astype(float),
                               np.load(direct_features / "test.npy").astype(float), atol=0.05)
    assert cached.jobs_run == 1


def test_bad_files_stop_the_run_or_are_skipped(tmp_path, nih_labels, cli):
    from tests.conftest import write_study

    dataset = png_dataset(tmp_path, nih_labels, corrupt=3)
    result = cli("run", write_study(tmp_path, tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}])))
    assert result.exit_code == 2 and "3 unreadable image(s)" in result.stderr and "on_bad_file: skip" in result.stderr
    assert not list((tmp_path / "out" / "features").glob("*-L1"))  # stopped before extraction
    skip = tiny_study(tmp_path / "skip", [{**dataset, "on_bad_file": "skip"}], [{"knn": {"k": [3]}}])
    summary = run_study(parse_study(skip, tmp_path), Reporter(quiet=True))
    assert summary.jobs_run == 1 and sum(e.images for e in summary.extractions) == 87 - 3


def test_image_training_protocols_train_on_slices_and_score_per_volume(tmp_path, shared_data):
    """AdrenalMNIST3D read slice-wise: fine-tuning, LoRA, BitFit, progressive freezing and a transformer head train
    on every 4th slice and store one score row per test volume, the aggregate of its slices' scores."""
    import radbench

    volume = {"axis": "axial", "slices": "every", "every": 4, "aggregate": "mean+max"}
    datasets = [{"name": "adrenal", "adapter": "medmnist", "path": str(shared_data / "medmnist" / "adrenalmnist3d.npz"),
                 "limit": 24, "volume": volume}]
    training = {"epochs": 1, "lr": [1e-3], "batch_size": 16, "augment": None}
    protocols = [{"finetune": training}, {"lora": training}, {"bitfit": training},
                 {"progressive_freezing": {**training, "frozen_blocks": [2]}},
                 {"transformer_head": {"epochs": 1, "lr": [1e-3], "width": 32, "depth": 1, "num_heads": 2}}]
    study = parse_study(tiny_study(tmp_path, datasets, protocols), tmp_path)
    summary = run_study(study, Reporter(quiet=True))
    assert summary.jobs_run == 5
    results = radbench.load(tmp_path / "out")
    for key in results.jobs.key:
        _, sample_ids, targets, scores = results.store.predictions(key)
        assert scores.shape == (24, 2) and len(set(sample_ids)) == 24 and "#" not in sample_ids[0]
        assert np.isfinite(scores).all()


def test_slice_scores_aggregate_per_volume_as_configured():
    from radbench.data.slices import SliceView

    owner = np.array([0, 0, 0, 1, 1, 2])
    scores = np.random.default_rng(0).random((6, 3))
    for aggregate in ("mean", "max", "mean+max"):
        view = SliceView(None, {"test": owner}, aggregate)
        got = view.per_volume(scores, "test")
        for v in range(3):
            mine = scores[owner == v]
            expected = {"mean": mine.mean(0), "max": mine.max(0), "mean+max": (mine.mean(0) + mine.max(0)) / 2}
            np.testing.assert_allclose(got[v], expected[aggregate])
    targets = np.eye(3)
    np.testing.assert_array_equal(SliceView(None, {"train": owner}, "mean").item_targets(targets, "train"),
                                  targets[owner])

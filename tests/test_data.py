"""Dataset adapters, patient-level splits, limit sampling and preprocessing, on the real shared data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from radbench.data import ADAPTERS, Task, load_dataset
from radbench.data.readers import read_image
from radbench.data.transforms import Preprocess
from radbench.errors import DataError
from tests.conftest import NIH_FINDINGS


def config(adapter: str, **keys):
    return ADAPTERS.get(adapter).config.model_validate({"name": "d", "adapter": adapter, **keys})


def nih_config(nih_labels, **keys):
    keys = {"label_columns": NIH_FINDINGS, **keys}
    return config("csv", path=str(nih_labels), image_column="Image Index", patient_column="Patient ID", **keys)


def test_medmnist_official_splits_task_and_names(pneumonia_npz):
    dataset = load_dataset(config("medmnist", path=str(pneumonia_npz)))
    assert dataset.task is Task.BINARY and dataset.class_names == ("normal", "pneumonia")
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 3882, "val": 524, "test": 624}
    assert np.bincount(dataset.splits["test"].labels).tolist() == [234, 390]
    assert dataset.split_origin == "official"


def test_medmnist_one_dimensional_labels(shared_data):
    dataset = load_dataset(config("medmnist", path=str(shared_data / "medmnist" / "breastmnist_resaved.npz")))
    assert dataset.class_names == ("malignant", "normal, benign") and len(dataset.splits["val"]) == 78


def test_medmnist_limit_is_stratified_and_reproducible(pneumonia_npz):
    first = load_dataset(config("medmnist", path=str(pneumonia_npz), limit=200))
    second = load_dataset(config("medmnist", path=str(pneumonia_npz), limit=200))
    other_seed = load_dataset(config("medmnist", path=str(pneumonia_npz), limit=200, split_seed=1))
    test = first.splits["test"]
    assert len(test) == 200 and np.bincount(test.labels).tolist() == [75, 125]  # 234:390 kept
    assert (test.sample_ids == second.splits["test"].sample_ids).all()
    assert not (test.sample_ids == other_seed.splits["test"].sample_ids).all()


def test_per_split_limit_caps_only_the_named_splits(pneumonia_npz):
    dataset = load_dataset(config("medmnist", path=str(pneumonia_npz), limit={"train": 300, "val": 50}))
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 300, "val": 50, "test": 624}
    with pytest.raises(ValueError, match="limit"):
        config("medmnist", path=str(pneumonia_npz), limit={"train": 0})
    with pytest.raises(ValueError, match="limit"):
        config("medmnist", path=str(pneumonia_npz), limit={"training": 10})


def test_nih_generated_split_is_patient_level_and_multilabel(nih_labels):
    dataset = load_dataset(nih_config(nih_labels))
    assert dataset.task is Task.MULTILABEL and dataset.num_classes == 14
    assert sum(len(s) for s in dataset.splits.values()) == 87
    patients = {name: set(split.patient_ids) for name, split in dataset.splits.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    patient_13 = [name for name, split in dataset.splits.items() if "13" in set(split.patient_ids)]
    assert len(patient_13) == 1 and (dataset.splits[patient_13[0]].patient_ids == "13").sum() == 6
    assert (dataset.splits["train"].labels.sum(0) > 0).all()  # every finding is learnable


def test_nih_limit_keeps_patients_whole(nih_labels):
    dataset = load_dataset(nih_config(nih_labels, limit=40, label_columns=["Infiltration", "Effusion"]))
    full = pd.read_csv(nih_labels).groupby("Patient ID").size()
    for split in dataset.splits.values():
        assert len(split) <= 40
        counts = pd.Series(split.patient_ids).value_counts()
        for patient, count in counts.items():
            assert count == full[int(patient)]


@pytest.mark.parametrize("policy, expected", [("ignore", np.nan), ("ones", 1.0), ("zeros", 0.0)])
def test_uncertain_labels_follow_the_policy_and_blanks_stay_missing(tmp_path, nih_labels, policy, expected):
    table = pd.read_csv(nih_labels)
    table["Image Index"] = [str(nih_labels.parent / n) for n in table["Image Index"]]
    table = table.astype({"Effusion": float, "Infiltration": float})
    table.loc[0, "Effusion"] = -1.0  # CheXpert-style uncertain
    table.loc[1, "Infiltration"] = np.nan  # not mentioned
    table.to_csv(tmp_path / "labels.csv", index=False)
    cfg = config("csv", path=str(tmp_path / "labels.csv"), image_column="Image Index",
                 label_columns=["Effusion", "Infiltration"], patient_column="Patient ID", uncertain=policy)
    dataset = load_dataset(cfg)
    rows = {sid: (split, i) for split in dataset.splits.values() for i, sid in enumerate(split.sample_ids)}
    split, i = rows[table.loc[0, "Image Index"]]
    np.testing.assert_equal(split.labels[i, 0], expected)
    split, i = rows[table.loc[1, "Image Index"]]
    assert np.isnan(split.labels[i, 1])  # a missing label is never silently a negative


def test_csv_single_label_strings_and_split_column(tmp_path, nih_labels):
    table = pd.read_csv(nih_labels)
    table["Image Index"] = [str(nih_labels.parent / n) for n in table["Image Index"]]
    table["view"] = table["View Position"]
    table["split"] = np.where(table["Patient ID"] % 3 == 0, "test", "train")  # no val: carved from train
    table.to_csv(tmp_path / "views.csv", index=False)
    dataset = load_dataset(config("csv", path=str(tmp_path / "views.csv"), image_column="Image Index",
                                  label_columns=["view"], patient_column="Patient ID", split_column="split"))
    assert dataset.task is Task.BINARY and dataset.class_names == ("AP", "PA")
    test_ids = set(table.loc[table["split"] == "test", "Image Index"])
    assert set(dataset.splits["test"].sample_ids) == test_ids  # test untouched
    assert any("val split carved from train" in note for note in dataset.notes)


def test_folder_adapter_with_patient_regex(tmp_path, nih_labels):
    table = pd.read_csv(nih_labels)
    for _, row in table.iterrows():
        label = "effusion" if row["Effusion"] else ("normal" if row["Finding Labels"] == "No Finding" else None)
        if label:
            (tmp_path / "cxr" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "cxr" / label / row["Image Index"]).symlink_to(nih_labels.parent / row["Image Index"])
    dataset = load_dataset(config("folder", path=str(tmp_path / "cxr"), patient_regex=r"^(\d+)_"))
    assert dataset.class_names == ("effusion", "normal") and dataset.task is Task.BINARY
    assert sum(len(s) for s in dataset.splits.values()) == 27
    assert set(dataset.splits["train"].patient_ids).isdisjoint(dataset.splits["test"].patient_ids)


def test_rgba_png_is_read_without_alpha(shared_data):
    image = read_image(shared_data / "nih_chestxray14_images" / "00000100_000.png")
    assert image.ndim in (2, 3) and (image.ndim == 2 or image.shape[2] == 3)


def test_preprocess_resize_pad_and_grayscale(tmp_path):
    gray = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    resize = Preprocess(64, "resize", (0.0,) * 3, (1.0,) * 3)(gray)
    assert resize.shape == (3, 64, 64) and torch.equal(resize[0], resize[1]) and torch.equal(resize[1], resize[2])
    padded = Preprocess(64, "pad", (0.0,) * 3, (1.0,) * 3)(gray)
    np.testing.assert_allclose(padded[0, 18:46, 18:46].numpy(), gray / 255.0, atol=1e-6)  # centred, not resized
    assert padded[:, :18].abs().sum() == 0 and padded[:, 46:].abs().sum() == 0
    normalised = Preprocess(64, "pad", (0.5,) * 3, (0.25,) * 3)(gray)
    assert normalised[0, 0, 0] == pytest.approx(-2.0)  # zero pixels padded before normalisation
    sixteen = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "x16.png")
    unit = Preprocess(2, "resize", (0.0,) * 3, (1.0,) * 3)(read_image(tmp_path / "x16.png"))
    np.testing.assert_allclose(unit[0].numpy(), [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)


def test_medmnist_multilabel_and_ordinal_tasks_from_the_flag(tmp_path, pneumonia_npz):
    """ChestMNIST (14 labels per image) and RetinaMNIST (ordinal 0-4) layouts, built from real images."""
    real = np.load(pneumonia_npz)
    rng = np.random.default_rng(0)
    chest = {f"{s}_images": real[f"{s}_images"][:60] for s in ("train", "val", "test")}
    chest |= {f"{s}_labels": (rng.random((60, 14)) < 0.3).astype(np.uint8) for s in ("train", "val", "test")}
    np.savez(tmp_path / "chestmnist_sample.npz", **chest)
    dataset = load_dataset(config("medmnist", path=str(tmp_path / "chestmnist_sample.npz")))
    assert dataset.task is Task.MULTILABEL and dataset.class_names[0] == "atelectasis" and dataset.num_classes == 14
    retina = {f"{s}_images": real[f"{s}_images"][:50] for s in ("train", "val", "test")}
    retina |= {f"{s}_labels": np.arange(50).reshape(-1, 1) % 5 for s in ("train", "val", "test")}
    np.savez(tmp_path / "retinamnist.npz", **retina)
    dataset = load_dataset(config("medmnist", path=str(tmp_path / "retinamnist.npz")))
    assert dataset.task is Task.ORDINAL and dataset.class_names == ("0", "1", "2", "3", "4")


def test_class_balanced_limit_keeps_patients_whole(pneumonia_npz, nih_labels):
    dataset = load_dataset(config("medmnist", path=str(pneumonia_npz), limit=100, balance=True))
    for split in dataset.splits.values():
        assert np.bincount(split.labels).tolist() == [50, 50]  # pneumonia is 9:1 in train, 1:1 after balancing
    views = load_dataset(nih_config(nih_labels, label_columns=["View Position"], limit=30, balance=True))
    full = pd.read_csv(nih_labels).groupby("Patient ID").size()
    train = views.splits["train"]
    counts = np.bincount(train.labels)
    assert abs(counts[0] - counts[1]) <= 5  # AP vs PA balanced, up to whole patients (patient 13 has 6 images)
    for patient, count in pd.Series(train.patient_ids).value_counts().items():
        assert count == full[int(patient)]
    with pytest.raises(DataError, match="balance: true needs a single-label task"):
        load_dataset(nih_config(nih_labels, limit=30, balance=True))

"""Each public layout adapter on a small copy of its real file layout (real headers, real images by link)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from radbench.data import ADAPTERS, Task, load_dataset
from radbench.data.segmentation import SegmentationDataset
from radbench.errors import DataError
from tests import standins


def config(adapter, path, **keys):
    return ADAPTERS.get(adapter).config.model_validate({"name": adapter, "adapter": adapter, "path": str(path), **keys})


@pytest.fixture(scope="module")
def nih_images(shared_data):
    folder = shared_data / "nih_chestxray14_images"
    return sorted(folder.glob("*.png")), pd.read_csv(folder / "labels.csv")


def link(target, link_path):
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target)
    return link_path


def test_nih_release_layout(tmp_path, shared_data, nih_images):
    images, labels = nih_images
    root = tmp_path / "ChestX-ray14"
    link(shared_data / "nih_chestxray14_labels" / "Data_Entry_2017_v2020.csv.gz", root / "Data_Entry_2017_v2020.csv.gz")
    for k, image in enumerate(images):  # spread over the release's images_0NN/images/ folders
        link(image, root / f"images_{k % 3 + 1:03d}" / "images" / image.name)
    entries = pd.read_csv(root / "Data_Entry_2017_v2020.csv.gz")
    test_patients = set(labels["Patient ID"][::4])
    is_test = entries["Patient ID"].isin(test_patients)
    (root / "test_list.txt").write_text("\n".join(entries["Image Index"][is_test]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(entries["Image Index"][~is_test]) + "\n")

    with pytest.raises(DataError, match="image file not found.*missing_images: skip"):
        load_dataset(config("nih", root))  # 112,120 rows, 87 images: say so
    dataset = load_dataset(config("nih", root, missing_images="skip"))
    assert dataset.task is Task.MULTILABEL and len(dataset.class_names) == 14 and "No Finding" not in dataset.class_names
    assert sum(len(s) for s in dataset.splits.values()) == 87
    test_ids = set(dataset.splits["test"].sample_ids)
    assert test_ids == set(labels["Image Index"][labels["Patient ID"].isin(test_patients)])  # official test list
    assert "official lists" in dataset.split_origin
    by_id = {sid: row for split in dataset.splits.values() for sid, row in zip(split.sample_ids, split.labels)}
    for _, row in labels.iterrows():  # labels parsed from 'Finding Labels' equal the curated 0/1 columns
        np.testing.assert_array_equal(by_id[row["Image Index"]], row[list(dataset.class_names)].to_numpy(float))
    pa_only = load_dataset(config("nih", root, missing_images="skip", views=["PA"]))
    assert sum(len(s) for s in pa_only.splits.values()) == (labels["View Position"] == "PA").sum()


def chexpert_header(shared_data):
    return (shared_data / "cxr_label_csv_layouts" / "chexpert_train_HEADER_ONLY.csv").read_text().strip().split(",")


def test_chexpert_layout_uncertainty_and_frontal(tmp_path, shared_data, nih_images):
    images, _ = nih_images
    header = chexpert_header(shared_data)
    root = tmp_path / "CheXpert-v1.0-small"
    rows = {"train": [], "valid": []}
    for k, image in enumerate(images[:40]):
        split = "valid" if k % 5 == 0 else "train"
        view = "lateral" if k % 7 == 3 else "frontal"
        patient = 64541 + k if split == "valid" else k // 2  # the public valid patients are distinct
        relative = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study1/view{k % 2 + 1}_{view}.jpg"
        link(image, tmp_path / relative)
        values = {h: "" for h in header}
        values.update({"Path": relative, "Sex": "Female", "Age": 60, "Frontal/Lateral": view.capitalize(),
                       "AP/PA": "PA" if view == "frontal" else "", "Atelectasis": [1.0, 0.0, -1.0, ""][k % 4],
                       "Cardiomegaly": 1.0 if k % 3 == 0 else 0.0, "Consolidation": float(k % 4 == 1), "Edema": -1.0 if k % 2 else float(k % 4 == 0),
                       "Pleural Effusion": 1.0 if k % 2 else 0.0})
        rows[split].append(values)
    for split, items in rows.items():
        pd.DataFrame(items, columns=header).to_csv(root / f"{split}.csv", index=False)
    ignore = load_dataset(config("chexpert", root))
    ones = load_dataset(config("chexpert", root, uncertain="ones"))
    assert ignore.class_names == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    all_ignore = np.concatenate([s.labels for s in ignore.splits.values()])
    all_ones = np.concatenate([s.labels for s in ones.splits.values()])
    uncertain = sum(1 for k in range(40) if k % 2)
    positive = sum(1 for k in range(40) if k % 4 == 0)
    assert np.isnan(all_ignore[:, 3]).sum() == uncertain  # Edema -1: masked (U-Ignore) ...
    assert (all_ones[:, 3] == 1).sum() == uncertain + positive  # ... or positive (U-Ones)
    assert len(ignore.splits["test"]) == 8  # valid.csv is the test split
    frontal = load_dataset(config("chexpert", root, frontal_only=True))
    assert sum(len(s) for s in frontal.splits.values()) == 40 - sum(1 for k in range(40) if k % 7 == 3)
    assert set(frontal.splits["train"].patient_ids).isdisjoint(frontal.splits["val"].patient_ids)


def test_mimic_cxr_jpg_layout(tmp_path, shared_data, nih_images):
    images, _ = nih_images
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    header = [h for h in chexpert_header(shared_data)[5:]]
    labels, splits, metadata = [], [], []
    for k, image in enumerate(images[:30]):
        subject, study, dicom = 10000000 + k // 3, 50000000 + k // 2, f"{k:08x}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd"
        link(image, root / f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg")
        splits.append({"dicom_id": dicom, "study_id": study, "subject_id": subject,
                       "split": ["train", "train", "validate", "test"][(k // 3) % 4]})
        metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": "PA" if k % 4 else "LL"})
        labels.append({"subject_id": subject, "study_id": study, **{h: float(k % 2) for h in header}})
    pd.DataFrame(labels).drop_duplicates(["subject_id", "study_id"]).to_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    pd.DataFrame(splits).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    pd.DataFrame(metadata).to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    dataset = load_dataset(config("mimic_cxr", root, labels="all"))
    assert dataset.num_classes == 14 and min(len(s) for s in dataset.splits.values()) > 0
    assert set(dataset.splits["val"].sample_ids) == {s["dicom_id"] for s in splits if s["split"] == "validate"}
    frontal = load_dataset(config("mimic_cxr", root, views=["PA"]))
    assert sum(len(s) for s in frontal.splits.values()) == sum(1 for m in metadata if m["ViewPosition"] == "PA")


def test_aptos_is_ordinal(tmp_path, shared_data):
    dataset = load_dataset(config("aptos", standins.aptos(tmp_path, shared_data)))
    assert dataset.task is Task.ORDINAL and dataset.class_names[4] == "Proliferative DR"


def test_isic_2019_one_hot_and_lesion_grouping(tmp_path, shared_data):
    classes = standins.ISIC_CLASSES
    folder = standins.isic2019(tmp_path, shared_data)  # image k has class k % 8 (no UNK); 4 images per lesion
    dataset = load_dataset(config("isic2019", folder))
    assert dataset.task is Task.MULTICLASS and dataset.class_names == tuple(classes[:8])  # UNK has no image
    where = {sid: name for name, s in dataset.splits.items() for sid in s.sample_ids}
    for lesion in range(10):  # the 4 images of a lesion share one split
        assert len({where[f"ISIC_{k:07d}"] for k in range(lesion * 4, lesion * 4 + 4)}) == 1


def test_cbis_ddsm_case_files_and_dicom_resolution(tmp_path, shared_data):
    standins.cbis_ddsm(tmp_path, shared_data)  # 6 patients per set and kind; patient 0: two abnormalities
    dataset = load_dataset(config("cbis_ddsm", tmp_path))
    assert dataset.class_names == ("benign", "malignant") and sum(len(s) for s in dataset.splits.values()) == 24
    labels = {sid: label for s in dataset.splits.values() for sid, label in zip(s.sample_ids, s.labels)}
    assert labels["Mass-Training_P_masstrain000_LEFT_CC"] == 1  # malignant through its second abnormality
    assert labels["Mass-Training_P_masstrain001_LEFT_CC"] == 0
    assert all(name.startswith(("Mass-Test", "Calc-Test")) for name in dataset.splits["test"].sample_ids)
    image = dataset.splits["train"].images.load(0)
    assert image.ndim == 2 and image.dtype == np.float32


def test_shenzhen_mask_folder(shared_data):
    path = shared_data / "cxr_lung_seg_shenzhen"
    dataset = load_dataset(config("mask_folder", path, images="train_images", masks="train_masks",
                                  mask_suffix="_mask", mask_threshold=127))
    assert isinstance(dataset, SegmentationDataset) and sum(len(s) for s in dataset.splits.values()) == 10
    split = dataset.splits["train"]
    mask, image = split.masks.load(0), split.images.load(0)
    assert mask.shape == image.shape == (512, 512) and set(np.unique(mask)) == {0, 1}
    assert 0.15 < mask.mean() < 0.5  # lungs cover a real fraction of a CXR
    with pytest.raises(DataError, match="mask value .* outside the 2 classes.*mask_threshold"):
        load_dataset(config("mask_folder", path, images="train_images", masks="train_masks",
                            mask_suffix="_mask")).splits["train"].masks.load(0)


def test_montgomery_left_and_right_masks(tmp_path, shared_data):
    folder = standins.montgomery(tmp_path, shared_data)  # Shenzhen lungs, each mask cut into left and right
    combined = load_dataset(config("montgomery", folder))
    separate = load_dataset(config("montgomery", folder, lungs="separate"))
    assert separate.class_names == ("background", "left lung", "right lung")
    mask = separate.splits["train"].masks.load(0)
    assert set(np.unique(mask)) == {0, 1, 2} and (combined.splits["train"].masks.load(0) > 0).sum() == (mask > 0).sum()


def test_decathlon_dataset_json_and_plain_layout(tmp_path, shared_data):
    """Three real FLAIR cases with tumour labels (BRATS 2013 x2, BraTS 2021), tumour sub-labels merged."""
    cases = shared_data / "ct_mri_seg_samples"
    sources = [(c / "Flair_subtrMeanDivStd.nii.gz", c / "OTMultiClass.nii.gz")
               for c in sorted((cases / "brats2013_deepmedic").iterdir())]
    sources.append((cases / "brats2021_sammed3d" / "imagesTr" / "BraTS2021_01646.nii.gz",
                    cases / "brats2021_sammed3d" / "labelsTr" / "BraTS2021_01646.nii.gz"))
    training = []
    for k, (image, label) in enumerate(sources):
        link(image, tmp_path / "imagesTr" / f"brain_{k:03d}.nii.gz")
        link(label, tmp_path / "labelsTr" / f"brain_{k:03d}.nii.gz")
        training.append({"image": f"./imagesTr/brain_{k:03d}.nii.gz", "label": f"./labelsTr/brain_{k:03d}.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "brain", "modality": {"0": "FLAIR"}, "labels": {"0": "background", "1": "tumour"},
        "numTraining": 3, "training": training, "test": []}))
    merge = {0: 0, 1: 1, 2: 1, 3: 1, 4: 1}
    dataset = load_dataset(config("decathlon", tmp_path, mask_values=merge, split_fractions=[0.34, 0.33, 0.33]))
    assert dataset.class_names == ("background", "tumour") and dataset.volume.axis == "axial"
    assert [len(s) for s in dataset.splits.values()] == [1, 1, 1]
    for split in dataset.splits.values():
        label = split.masks.load_volume(0)
        assert label.array.shape == split.images.load_volume(0).array.shape
        assert set(np.unique(label.array)) == {0, 1}
    with pytest.raises(DataError, match="mask value 2 is outside the 2 classes"):  # without the merge
        unmerged = load_dataset(config("decathlon", tmp_path, split_fractions=[0.34, 0.33, 0.33]))
        [s.masks.load_volume(0) for s in unmerged.splits.values()]
    plain = cases / "brats2021_sammed3d"  # no dataset.json
    with pytest.raises(DataError, match="give `class_names`"):
        load_dataset(config("decathlon", plain))
    with pytest.raises(DataError, match="split is empty \\(too few samples"):
        load_dataset(config("decathlon", plain, class_names=["background", "edema"]))

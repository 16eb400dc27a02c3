"""Small stand-ins of the public data layouts the shipped studies name (their own folder and file names, real
headers, real images from ../shared/data by link), built under one data root for `radbench plan` / `run
--data-root`. Labels are the real ones where the source has them (NIH), otherwise assigned to fill every class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def link(target: Path, link_path: Path) -> Path:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target)
    return link_path


def nih_images(shared: Path) -> list[Path]:
    return sorted((shared / "nih_chestxray14_images").glob("*.png"))


def chestxray14(root: Path, shared: Path, copies: int = 12) -> Path:
    """ChestX-ray14/: the release's Data_Entry rows of the images at hand, repeated `copies` times as new patients
    (the same pixels under new names) so that every finding has the 16 patients a few-shot curve needs; official
    lists; images_00N/images/."""
    folder = root / "ChestX-ray14"
    images = {p.name: p for p in nih_images(shared)}
    entries = pd.read_csv(shared / "nih_chestxray14_labels" / "Data_Entry_2017_v2020.csv.gz")
    entries = entries[entries["Image Index"].isin(set(images))]
    copied = []
    for copy in range(copies):
        rows = entries.copy()
        rows["Patient ID"] = rows["Patient ID"] + 100_000 * copy
        rows["Image Index"] = [f"{100_000 * copy + int(n[:8]):08d}{n[8:]}" for n in entries["Image Index"]]
        for source, name in zip(entries["Image Index"], rows["Image Index"]):
            link(images[source], folder / f"images_{copy % 2 + 1:03d}" / "images" / name)
        copied.append(rows)
    entries = pd.concat(copied, ignore_index=True)
    entries.to_csv(folder / "Data_Entry_2017_v2020.csv", index=False)
    test = entries["Patient ID"].isin(sorted(set(entries["Patient ID"]))[::4])
    (folder / "test_list.txt").write_text("\n".join(entries["Image Index"][test]) + "\n")
    (folder / "train_val_list.txt").write_text("\n".join(entries["Image Index"][~test]) + "\n")
    return folder


def chexpert(root: Path, shared: Path, count: int = 480) -> Path:
    header = (shared / "cxr_label_csv_layouts" / "chexpert_train_HEADER_ONLY.csv").read_text().strip().split(",")
    rows: dict[str, list] = {"train": [], "valid": []}
    images = nih_images(shared)
    for k in range(count):
        image = images[k % len(images)]
        split = "valid" if k % 4 == 0 else "train"
        patient = 64541 + k if split == "valid" else k // 2
        relative = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study{k}/view1_frontal.jpg"
        link(image, root / relative)
        values = {h: "" for h in header}
        values.update({"Path": relative, "Sex": "Female", "Age": 60, "Frontal/Lateral": "Frontal", "AP/PA": "PA"})
        from radbench.data.chexpert import CHEXPERT_OBSERVATIONS  # every one of the 14 labelled, as the real file

        for c, finding in enumerate(CHEXPERT_OBSERVATIONS):
            values[finding] = [1.0, 0.0][(k // 3 + c) % 2]
        rows[split].append(values)
    for split, items in rows.items():
        pd.DataFrame(items, columns=header).to_csv(root / "CheXpert-v1.0-small" / f"{split}.csv", index=False)
    return root / "CheXpert-v1.0-small"


def montgomery(root: Path, shared: Path) -> Path:
    """MontgomerySet/: the Shenzhen lungs renamed (each twice, as new patients), each mask split into the left and
    right lung files."""
    from PIL import Image

    folder, source = root / "MontgomerySet", shared / "cxr_lung_seg_shenzhen"
    for k, image in enumerate(sorted((source / "train_images").glob("*.png")) * 2):  # 20: 8-patient few-shot
        name = f"MCUCXR_{k + 1:04d}_{k % 2}.png"
        link(image, folder / "CXR_png" / name)
        mask = np.asarray(Image.open(source / "train_masks" / f"{image.stem}_mask.png")) > 127
        half = mask.shape[1] // 2
        for side, keep in (("leftMask", slice(half, None)), ("rightMask", slice(0, half))):
            part = np.zeros(mask.shape, np.uint8)
            part[:, keep] = mask[:, keep] * 255
            (folder / "ManualMask" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(part).save(folder / "ManualMask" / side / name)
    return folder


def _decathlon(folder: Path, cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]], labels: dict) -> Path:
    import nibabel as nib

    training = []
    for k, (image, label, affine) in enumerate(cases):
        for kind, array in (("imagesTr", image), ("labelsTr", label)):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), folder / kind / f"case_{k:03d}.nii.gz")
        training.append({"image": f"./imagesTr/case_{k:03d}.nii.gz", "label": f"./labelsTr/case_{k:03d}.nii.gz"})
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "training": training, "test": []}))
    return folder


def brain_tumour(root: Path, shared: Path) -> Path:
    """Task01_BrainTumour/: MSD's 4-channel MRI (the real FLAIR repeated, every 4th voxel) and labels 0-3."""
    import nibabel as nib

    cases = []
    for case in sorted((shared / "ct_mri_seg_samples" / "brats2013_deepmedic").iterdir()) * 7:  # 14: 8-patient few-shot
        image = nib.load(case / "Flair_subtrMeanDivStd.nii.gz")
        flair = np.asarray(image.dataobj, dtype=np.float32)[::8, ::8, ::16]
        label = np.minimum(np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj)[::8, ::8, ::16], 3)
        cases.append((np.stack([flair] * 4, axis=-1), label.astype(np.uint8), image.affine @ np.diag([8, 8, 16, 1])))
    return _decathlon(root / "Task01_BrainTumour", cases,
                      {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"})


def liver(root: Path, shared: Path) -> Path:
    """Task03_Liver/: the TotalSegmentator CT with its liver as label 1 (14 copies: a layout, not a cohort)."""
    import nibabel as nib

    folder = shared / "ct_mri_seg_samples" / "totalsegmentator_examples"
    image = nib.load(folder / "example_ct_sm.nii.gz")
    label = (np.asarray(nib.load(folder / "example_seg.nii.gz").dataobj)[::4, ::4, ::3] == 5).astype(np.uint8)
    ct = np.asarray(image.dataobj, dtype=np.float32)[::4, ::4, ::3]  # few slices: a layout check, kept fast
    return _decathlon(root / "Task03_Liver", [(ct, label, image.affine @ np.diag([4, 4, 3, 1]))] * 14,
                      {"0": "background", "1": "liver", "2": "cancer"})


def aptos(root: Path, shared: Path, count: int = 50) -> Path:
    folder = root / "aptos2019-blindness-detection"
    ids = [f"{k:012x}" for k in range(count)]
    for image, name in zip(nih_images(shared), ids):
        link(image, folder / "train_images" / f"{name}.png")
    pd.DataFrame({"id_code": ids, "diagnosis": [k % 5 for k in range(count)]}).to_csv(folder / "train.csv", index=False)
    return folder


ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def isic2019(root: Path, shared: Path, count: int = 64) -> Path:
    folder = root / "ISIC2019"
    rows, meta = [], []
    for k, image in enumerate(nih_images(shared)[:count]):
        name = f"ISIC_{k:07d}"
        link(image, folder / "ISIC_2019_Training_Input" / f"{name}.jpg")
        rows.append({"image": name, **{c: float(c == ISIC_CLASSES[k % 8]) for c in ISIC_CLASSES}})
        meta.append({"image": name, "age_approx": 50, "anatom_site_general": "torso",
                     "lesion_id": f"BCN_{k // 4:07d}" if k < 40 else "", "sex": "male"})
    pd.DataFrame(rows).to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(meta).to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)
    return folder


CBIS_HEADER = ("patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
               "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")


def cbis_ddsm(folder: Path, shared: Path, patients: int = 6) -> Path:
    """CBIS-DDSM's four case CSVs and DICOM tree (real DICOMs by link; the download's folder names differ from
    the CSV's, as they really do). Patient 0 of each set has two abnormalities on one image."""
    dicoms = sorted((shared / "dicom_samples" / "pydicom_data").glob("RG*_J2KI.dcm")) + [
        shared / "dicom_samples" / "pydicom_bundled" / "CT_small.dcm"]
    calc_header = CBIS_HEADER.replace("breast_density", "breast density").replace(
        "mass shape,mass margins", "calc type,calc distribution")
    k = 0
    for kind, prefix in (("mass", "Mass"), ("calc", "Calc")):
        for split, part in (("train", "Training"), ("test", "Test")):
            rows = []
            for patient in range(patients):
                name = f"{prefix}-{part}_P_{kind}{split}{patient:03d}_LEFT_CC"
                link(dicoms[k % len(dicoms)], folder / name / "07-20-2016-DDSM-74994" / "1.000000-full-12345" / "1-1.dcm")
                k += 1
                pathology = ["MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"][patient % 3]
                listed = f"{name}/1.3.6.1.4.1.9590.100.1.2.{patient}/1.3.6.1.4.1.9590.100.1.2.{patient}9/000000.dcm\n"
                for abnormality in (1, 2) if patient == 0 else (1,):
                    rows.append([f"P_{kind}{split}{patient:03d}", 3, "LEFT", "CC", abnormality, kind, "OVAL",
                                 "CIRCUMSCRIBED", 4, pathology if abnormality == 1 else "MALIGNANT", 3,
                                 f'"{listed}"', f"{name}_1/x/y/000000.dcm", f"{name}_1/x/y/000001.dcm"])
            lines = [CBIS_HEADER if kind == "mass" else calc_header] + [",".join(map(str, r)) for r in rows]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{kind}_case_description_{split}_set.csv").write_text("\n".join(lines) + "\n")
    return folder


def pediatric_pneumonia(root: Path, shared: Path) -> Path:
    """chest_xray/: Kermany et al.'s train/val/test folders of NORMAL and PNEUMONIA images."""
    folder = root / "chest_xray"
    for k, image in enumerate(nih_images(shared)[:60]):
        split = "test" if k % 5 == 0 else "val" if k % 5 == 1 else "train"
        link(image, folder / split / ("PNEUMONIA" if k % 2 else "NORMAL") / f"person{k}_{image.name}")
    return folder


def medmnist(root: Path, flags: list[str], sizes: list[int], per_split: int = 12) -> Path:
    """medmnist/<flag>[_<size>].npz with the shapes and label layout the medmnist package declares (pixels drawn at
    random: a layout check, not data)."""
    import medmnist as package

    folder = root / "medmnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for flag in flags:
        info = package.INFO[flag]
        classes, channels = len(info["label"]), info["n_channels"]
        for size in sizes:
            arrays = {}
            for split in ("train", "val", "test"):
                shape = (per_split, size, size) + ((channels,) if channels == 3 else ())
                arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
                if info["task"].startswith("multi-label"):
                    labels = (np.arange(per_split)[:, None] + np.arange(classes)[None]) % 2
                else:
                    labels = (np.arange(per_split) % classes)[:, None]
                arrays[f"{split}_labels"] = labels.astype(np.uint8)
            np.savez(folder / f"{flag}{'' if size == 28 else f'_{size}'}.npz", **arrays)
    return folder

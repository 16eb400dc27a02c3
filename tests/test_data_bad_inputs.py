"""Reader and layout errors: each names the file and what is wrong."""

from __future__ import annotations

import copy
import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from radbench.data import ADAPTERS, load_dataset
from radbench.data.intensity import IntensityConfig
from radbench.data.readers import read_image
from radbench.data.readers.volume import read_volume
from radbench.errors import DataError
from tests.conftest import tiny_study, write_study


def config(adapter, path, **keys):
    return ADAPTERS.get(adapter).config.model_validate({"name": "d", "adapter": adapter, "path": str(path), **keys})


def test_truncated_dicom(tmp_path, shared_data):
    data = (shared_data / "dicom_samples" / "pydicom_bundled" / "CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.dcm: (cannot decode pixel data|not a readable DICOM)"):
        read_image(tmp_path / "cut.dcm")


@pytest.mark.parametrize("name", ["rtstruct.dcm", "test-SR.dcm"])
def test_dicom_without_pixel_data(shared_data, name):
    with pytest.raises(DataError, match=f"{name}: DICOM file has no pixel data"):
        read_image(shared_data / "dicom_samples" / "pydicom_bundled" / name)


def test_text_file_named_dcm(tmp_path):
    (tmp_path / "notes.dcm").write_text("not an image\n")
    with pytest.raises(DataError, match="notes.dcm: not a (readable )?DICOM file"):
        read_image(tmp_path / "notes.dcm")


def test_nifti_with_wrong_dimensions(tmp_path, shared_data):
    with pytest.raises(DataError, match="example4d.nii.gz: expected a 3D volume, got shape .*choose one with `channel:`"):
        read_volume(shared_data / "nifti_samples" / "example4d.nii.gz")
    assert read_volume(shared_data / "nifti_samples" / "example4d.nii.gz", channel=1).array.ndim == 3
    with pytest.raises(DataError, match="channel 5 requested but the file has 2"):
        read_volume(shared_data / "nifti_samples" / "example4d.nii.gz", channel=5)
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    with pytest.raises(DataError, match="flat.nii.gz: expected a 3D volume, got shape \\(8, 8\\)"):
        read_volume(tmp_path / "flat.nii.gz")


def test_corrupt_nifti(tmp_path, shared_data):
    data = (shared_data / "nifti_samples" / "example4d.nii.gz").read_bytes()
    (tmp_path / "broken.nii.gz").write_bytes(data[:5000])
    with pytest.raises(DataError, match="broken.nii.gz: cannot read NIfTI"):
        read_volume(tmp_path / "broken.nii.gz")


def test_series_with_two_slices_at_one_position(tmp_path, shared_data):
    source = pydicom.dcmread(shared_data / "dicom_samples" / "pydicom_bundled" / "CT_small.dcm")
    for k in range(3):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = f"{source.SOPInstanceUID}.{k}"
        ds.save_as(tmp_path / f"{k}.dcm")  # all at the same ImagePositionPatient
    with pytest.raises(DataError, match="two slices share a position"):
        read_volume(tmp_path)


def test_unknown_window_preset():
    with pytest.raises(ValueError, match="unknown window preset 'liver'"):
        IntensityConfig(window="liver")


def test_mask_size_mismatch(tmp_path, shared_data):
    source = shared_data / "cxr_lung_seg_shenzhen"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k, image in enumerate(sorted((source / "train_images").glob("*.png"))[:4]):
        (tmp_path / "images" / image.name).symlink_to(image)
        mask = Image.open(source / "train_masks" / f"{image.stem}_mask.png")
        (mask.resize((256, 256)) if k == 2 else mask).save(tmp_path / "masks" / f"{image.stem}_mask.png")
    with pytest.raises(DataError, match="CHNCXR_0003_0_mask.png: mask size \\(256, 256\\) differs from its image"):
        load_dataset(config("mask_folder", tmp_path, mask_suffix="_mask", mask_threshold=127))


def test_image_without_mask(tmp_path, shared_data):
    source = shared_data / "cxr_lung_seg_shenzhen"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "CHNCXR_0001_0.png").symlink_to(source / "train_images" / "CHNCXR_0001_0.png")
    with pytest.raises(DataError, match="CHNCXR_0001_0.png: no mask CHNCXR_0001_0_mask.png"):
        load_dataset(config("mask_folder", tmp_path, mask_suffix="_mask"))


def test_decathlon_label_on_another_grid(tmp_path, shared_data):
    cases = shared_data / "ct_mri_seg_samples"
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "imagesTr" / "a.nii.gz").symlink_to(cases / "totalsegmentator_examples" / "example_ct_sm.nii.gz")
    (tmp_path / "labelsTr" / "a.nii.gz").symlink_to(cases / "totalsegmentator_examples" / "example_seg_mr.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ"},
                                                       "training": [{"image": "./imagesTr/a.nii.gz",
                                                                     "label": "./labelsTr/a.nii.gz"}]}))
    with pytest.raises(DataError, match="a.nii.gz: label grid \\(117, 91, 20\\) differs from its image"):
        load_dataset(config("decathlon", tmp_path))


def test_broken_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text('{"labels": {"0": "background"}}')
    with pytest.raises(DataError, match="dataset.json: not a Decathlon dataset.json \\(KeyError"):
        load_dataset(config("decathlon", tmp_path))


def test_empty_folder(tmp_path):
    (tmp_path / "class_a").mkdir()
    (tmp_path / "class_b").mkdir()
    with pytest.raises(DataError, match="no images with extensions"):
        load_dataset(config("folder", tmp_path))


def test_volumes_without_volume_settings(tmp_path, shared_data, cli):
    ct = shared_data / "ct_mri_seg_samples" / "totalsegmentator_examples" / "example_ct_sm.nii.gz"
    (tmp_path / "v.csv").write_text(f"path,label\n{ct},1\n{ct.with_name('example_mr_sm.nii.gz')},0\n")
    study = tiny_study(tmp_path, [{"name": "v", "adapter": "csv", "path": str(tmp_path / "v.csv"),
                                   "label_columns": ["label"]}])
    result = cli("run", write_study(tmp_path, study))
    assert result.exit_code == 2 and "are 3D volumes (example_ct_sm.nii.gz); add `volume:` settings" in result.stderr


def test_nih_unknown_finding(tmp_path, shared_data):
    lines = (shared_data / "nih_chestxray14_labels" / "Data_Entry_2017_head40.csv").read_text().splitlines()
    lines[5] = lines[5].replace("No Finding", "Covid") if "No Finding" in lines[5] else lines[5].replace(
        lines[5].split(",")[1], "Covid", 1)
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="Data_Entry_2017.csv: line 6: unknown finding 'Covid'"):
        load_dataset(config("nih", tmp_path, missing_images="skip"))

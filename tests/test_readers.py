"""Readers on real files: DICOM intensities equal pydicom's own LUT functions, MONOCHROME1, compressed
transfer syntaxes, multi-frame, series sorting, NIfTI/NRRD orientation, and the decoded-volume cache."""

from __future__ import annotations

import copy
import random

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from radbench.data.intensity import WINDOW_PRESETS, IntensityConfig
from radbench.data.readers import read_image
from radbench.data.readers.volume import read_volume
from radbench.errors import DataError


@pytest.fixture(scope="module")
def dicom(shared_data):
    return shared_data / "dicom_samples"


def unit(values, low, high):
    return np.clip((np.asarray(values, float) - low) / (high - low), 0, 1)


def test_ct_named_window_equals_pydicom_windowing(dicom):
    path = dicom / "pydicom_bundled" / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    hounsfield = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(hounsfield, ds.pixel_array.astype(float) - 1024)  # intercept -1024, slope 1
    for preset, (center, width) in WINDOW_PRESETS.items():
        ours = read_image(path, IntensityConfig(window=preset))
        reference = copy.deepcopy(ds)
        reference.WindowCenter, reference.WindowWidth = center, width
        expected = apply_voi_lut(hounsfield, reference)
        # pydicom's output range for this signed 16-bit CT after rescale
        low, high = -(2**15) * 1 - 1024, (2**15 - 1) - 1024
        np.testing.assert_allclose(ours, unit(expected, low, high), atol=1e-6, err_msg=preset)


def test_file_window_is_used_by_default(dicom):
    path = dicom / "pydicom_bundled" / "MR_small.dcm"  # WindowCenter 600 in the file
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(read_image(path), unit(expected, -(2**15), 2**15 - 1), atol=1e-6)


def test_voi_lut_sequence(dicom):
    path = dicom / "pydicom_data" / "vlut_04.dcm"
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(read_image(path), np.asarray(expected, float) / (2**16 - 1), atol=1e-6)


def test_monochrome1_is_inverted(dicom):
    path = dicom / "pydicom_data" / "RG3_J2KI.dcm"  # CR, MONOCHROME1, JPEG 2000, 10-bit
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    windowed = unit(apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds), 0, 2**10 - 1)
    ours = read_image(path)
    np.testing.assert_allclose(ours, 1.0 - windowed, atol=1e-6)
    raw = ds.pixel_array
    assert ours[np.unravel_index(raw.argmax(), raw.shape)] <= ours[np.unravel_index(raw.argmin(), raw.shape)]


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                        "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"])
def test_lossless_transfer_syntaxes_decode_to_the_same_pixels(dicom, compressed):
    reference = read_image(dicom / "pydicom_bundled" / "MR_small.dcm")
    np.testing.assert_array_equal(read_image(dicom / "pydicom_bundled" / compressed), reference)


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "MR2_J2KI.dcm", "RG1_J2KI.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_compressed_radiographs_decode(dicom, name):
    image = read_image(dicom / "pydicom_data" / name)
    assert image.dtype == np.float32 and 0 <= image.min() < image.max() <= 1 and image.shape[0] >= 256


def test_multiframe_is_a_volume(dicom):
    path = dicom / "pydicom_data" / "emri_small.dcm"
    volume = read_volume(path)
    frames = pydicom.dcmread(path).pixel_array
    assert volume.array.shape == frames.shape == (10, 64, 64)
    with pytest.raises(DataError, match="multi-frame DICOM \\(10 frames\\) is a volume"):
        read_image(path)


def test_series_folder_is_sorted_by_position(tmp_path, dicom):
    source = pydicom.dcmread(dicom / "pydicom_bundled" / "CT_small.dcm")
    positions = [-75.7 + 2.5 * k for k in range(6)]
    order = list(range(6))
    random.Random(0).shuffle(order)
    for name_index, k in enumerate(order):  # file names in shuffled order; slice k has value k in its pixels
        ds = copy.deepcopy(source)
        ds.ImagePositionPatient = [-158.135803, -179.035797, positions[k]]
        ds.InstanceNumber = name_index + 1
        ds.SOPInstanceUID = f"{source.SOPInstanceUID}.{k}"
        pixels = source.pixel_array.copy()
        pixels[0, 0] = 1000 + k
        ds.PixelData = pixels.tobytes()
        ds.save_as(tmp_path / f"IM{name_index:04d}.dcm")
    volume = read_volume(tmp_path)
    assert volume.array.shape == (6, 128, 128)
    assert volume.spacing == pytest.approx((2.5, 0.661468, 0.661468))
    corner = volume.array[:, 0, 0] - (-1024)  # HU back to stored values
    np.testing.assert_allclose(corner, [1000 + k for k in range(6)])  # inferior -> superior


def test_nifti_orientations_give_one_canonical_array(tmp_path, shared_data):
    path = shared_data / "ct_mri_seg_samples" / "totalsegmentator_examples" / "example_ct_sm.nii.gz"
    original = nib.load(path)
    reference = read_volume(path)
    data = np.asarray(original.dataobj)
    # the same voxels stored with the x axis flipped, and with the axes permuted: geometry is unchanged
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = data.shape[0] - 1
    variants = {
        "flipped.nii.gz": (data[::-1], original.affine @ flip),
        "permuted.nii.gz": (np.transpose(data, (2, 0, 1)), original.affine[:, [2, 0, 1, 3]]),
    }
    for name, (array, affine) in variants.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), tmp_path / name)
        other = read_volume(tmp_path / name)
        np.testing.assert_array_equal(other.array, reference.array, err_msg=name)
        assert other.spacing == pytest.approx(reference.spacing)
        np.testing.assert_array_equal(other.to_source(other.array), array)  # exact round trip to the file grid
    # axial slice 0 is the most inferior; anterior is at the top of each slice
    assert nib.aff2axcodes(original.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(reference.array[0], data[::-1, ::-1, 0].T)  # rows A->P, columns R->L


def test_nrrd_and_nifti_of_the_same_image_agree(tmp_path, shared_data):
    import SimpleITK as sitk

    nrrd = shared_data / "ct_mri_seg_samples" / "pyradiomics_testcases" / "brain1_image.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(nrrd)), str(tmp_path / "brain1.nii.gz"))
    a, b = read_volume(nrrd), read_volume(tmp_path / "brain1.nii.gz")
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == pytest.approx(b.spacing) and a.spacing == pytest.approx((6.5, 0.78125, 0.78125))


def test_decoded_volume_is_cached(shared_data, monkeypatch):
    import radbench.data.readers.volume as volume_module

    calls = []
    real = volume_module.read_nifti
    monkeypatch.setattr(volume_module, "read_nifti", lambda *a: calls.append(a) or real(*a))
    volume_module._cached.cache_clear()
    path = shared_data / "ct_mri_seg_samples" / "brats2021_sammed3d" / "imagesTr" / "BraTS2021_01646.nii.gz"
    for _ in range(5):  # five slice reads of one large .nii.gz decompress it once
        read_volume(path).array[50]
    assert len(calls) == 1

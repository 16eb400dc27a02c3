"""3D volumes from NIfTI (nibabel), NRRD/MHA/MHD (SimpleITK), DICOM series folders and multi-frame DICOM.

Every volume is brought to one canonical layout: `array[z]` is an axial slice as a radiologist views it
(anterior at the top, the patient's right on the image's left), z running inferior -> superior; `spacing` is
(z, y, x) in mm. The source affine, shape and orientation are kept, so arrays (e.g. predicted masks) can be
mapped back onto the source voxel grid exactly."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radbench.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    array: np.ndarray  # (Z, Y, X) float32, modality units (or [0, 1] after intensity mapping)
    spacing: tuple[float, float, float]  # mm along Z, Y, X
    affine: np.ndarray  # source voxel -> RAS mm
    source_shape: tuple[int, int, int]
    orientation: np.ndarray  # nibabel ornt from source voxel axes to RAS

    def with_array(self, array: np.ndarray) -> "Volume":
        return Volume(array, self.spacing, self.affine, self.source_shape, self.orientation)

    def to_source(self, array_zyx: np.ndarray) -> np.ndarray:
        """Map a canonical (Z, Y, X) array back onto the source file's voxel grid."""
        from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

        ras = np.transpose(array_zyx, (2, 1, 0))[::-1, ::-1]
        back = ornt_transform(axcodes2ornt(("R", "A", "S")), self.orientation)
        return np.ascontiguousarray(apply_orientation(ras, back))


def canonical_volume(data: np.ndarray, affine: np.ndarray) -> Volume:
    """Source voxel array (i, j, k) + voxel->RAS affine -> canonical Volume."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    if data.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {data.shape}")
    orientation = io_orientation(affine)
    ras = apply_orientation(data, orientation)
    ras_affine = affine @ inv_ornt_aff(orientation, data.shape)
    zooms = np.sqrt((ras_affine[:3, :3] ** 2).sum(axis=0))  # x, y, z
    # RAS+ index order is (toward Right, toward Anterior, toward Superior); the display wants columns toward
    # the patient's left and rows toward posterior, so both in-plane axes are reversed
    array = np.ascontiguousarray(np.transpose(ras[::-1, ::-1], (2, 1, 0)), dtype=np.float32)
    return Volume(array, (float(zooms[2]), float(zooms[1]), float(zooms[0])), affine, tuple(data.shape), orientation)


def _squeeze_3d(data: np.ndarray, path: Path, channel: int | None = None) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4 and channel is not None:
        if not 0 <= channel < data.shape[3]:
            raise DataError(f"{path}: channel {channel} requested but the file has {data.shape[3]}")
        data = data[..., channel]
    if data.ndim != 3:
        hint = " (a 4D file: choose one with `channel:`)" if data.ndim == 4 else ""
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}{hint}")
    return data


def read_nifti(path: Path, channel: int | None = None) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as error:  # nibabel raises ImageFileError, EOFError, zlib errors, ...
        raise DataError(f"{path}: cannot read NIfTI ({type(error).__name__}: {error})") from None
    return canonical_volume(_squeeze_3d(data, path, channel), image.affine)


def read_itk(path: Path, channel: int | None = None) -> Volume:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read image ({str(error).strip().splitlines()[-1]})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: {image.GetNumberOfComponentsPerPixel()}-component images are not volumes")
    data = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.float32)  # (x, y, z)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return canonical_volume(_squeeze_3d(data, path), LPS_TO_RAS @ affine)  # ITK geometry is LPS


def _dicom_affine(orientation, spacing_rc, first_position, slice_vector) -> np.ndarray:
    """Voxel (column, row, slice) -> LPS mm, as DICOM PS3.3 C.7.6.2.1.1 defines it."""
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * float(spacing_rc[1])  # along a row = increasing column index
    affine[:3, 1] = col_dir * float(spacing_rc[0])
    affine[:3, 2] = slice_vector
    affine[:3, 3] = np.array(first_position, float)
    return affine


def read_dicom_series(folder: Path, channel: int | None = None) -> Volume:
    from radbench.data.readers.dicom import modality_values, read_dataset

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    headers = []
    for path in files:
        try:
            headers.append((path, read_dataset(path, pixels=False)))
        except DataError:
            continue  # not every file in a series folder is an image (DICOMDIR, notes)
    headers = [(p, h) for p, h in headers if "ImagePositionPatient" in h and "Rows" in h]
    if len(headers) < 2:
        raise DataError(f"{folder}: a DICOM series needs at least 2 image files with ImagePositionPatient")
    series = {str(h.get("SeriesInstanceUID", "")) for _, h in headers}
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series; give one folder per series")
    orientation = [float(v) for v in headers[0][1].ImageOrientationPatient]
    normal = np.cross(orientation[:3], orientation[3:])
    headers.sort(key=lambda item: float(np.dot(normal, [float(v) for v in item[1].ImagePositionPatient])))
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for _, h in headers])
    steps = np.diff(positions @ normal)
    if np.any(steps <= 1e-4):
        raise DataError(f"{folder}: two slices share a position; the series is not one volume")
    if np.ptp(steps) > 0.01 * np.mean(steps) + 1e-3:
        raise DataError(f"{folder}: uneven slice spacing ({steps.min():.3f}-{steps.max():.3f} mm); resample it first")
    slices = []
    for path, _ in headers:
        dataset = read_dataset(path)
        from radbench.data.readers.dicom import decoded_pixels

        slices.append(modality_values(dataset, decoded_pixels(dataset, path)))  # rescale may differ per slice
    stack = np.stack(slices)  # (slice, row, column)
    slice_vector = (positions[-1] - positions[0]) / (len(positions) - 1)
    affine = _dicom_affine(orientation, headers[0][1].PixelSpacing, positions[0], slice_vector)
    return canonical_volume(np.transpose(stack, (2, 1, 0)).astype(np.float32), LPS_TO_RAS @ affine)


def read_dicom_multiframe(path: Path, channel: int | None = None) -> Volume:
    """Enhanced / multi-frame DICOM: frame geometry from the functional groups when present."""
    from radbench.data.readers.dicom import read_dicom_frames

    frames, dataset = read_dicom_frames(path)
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")

    def first(group, sequence, attribute):
        try:
            return getattr(getattr(group, sequence)[0], attribute)
        except (AttributeError, IndexError, TypeError):
            return None

    orientation = first(shared, "PlaneOrientationSequence", "ImageOrientationPatient") or dataset.get(
        "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])
    spacing = first(shared, "PixelMeasuresSequence", "PixelSpacing") or dataset.get("PixelSpacing", [1.0, 1.0])
    positions = [first(f, "PlanePositionSequence", "ImagePositionPatient") for f in (per_frame or [])]
    if len(frames) > 1 and positions and all(p is not None for p in positions):
        positions = np.array([[float(v) for v in p] for p in positions])
        slice_vector = (positions[-1] - positions[0]) / (len(positions) - 1)
        origin = positions[0]
    else:
        thickness = float(first(shared, "PixelMeasuresSequence", "SliceThickness") or dataset.get("SliceThickness", 1.0) or 1.0)
        slice_vector = np.cross(orientation[:3], orientation[3:]) * thickness
        origin = dataset.get("ImagePositionPatient", [0.0, 0.0, 0.0])
    affine = _dicom_affine([float(v) for v in orientation], spacing, origin, slice_vector)
    return canonical_volume(np.transpose(frames, (2, 1, 0)), LPS_TO_RAS @ affine)


def volume_reader(path: Path):
    name = path.name.lower()
    if path.is_dir():
        return read_dicom_series
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti
    if name.endswith(ITK_SUFFIXES):
        return read_itk
    if name.endswith(".dcm") or _has_dicom_magic(path):
        return read_dicom_multiframe
    raise DataError(f"{path}: unknown volume format (use NIfTI, NRRD, MHA/MHD, a DICOM series folder or multi-frame DICOM)")


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


@functools.lru_cache(maxsize=4)
def _cached(path: str, size: int, mtime_ns: int, channel: int | None) -> Volume:
    source = Path(path)
    return volume_reader(source)(source, channel)


def read_volume(path: Path, channel: int | None = None) -> Volume:
    """Decoded once per process and kept (LRU of 4): reading slice after slice of a large .nii.gz does not
    decompress the file again for every slice. `channel` picks one modality of a 4D file (MSD BraTS)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    stat = path.stat()
    return _cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, channel)


def volume_shape(path: Path) -> tuple[int, ...]:
    """The source voxel grid's shape from the header alone (for pairing checks before any decoding)."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib

        try:
            return tuple(nib.load(str(path)).shape[:3])
        except Exception as error:
            raise DataError(f"{path}: cannot read NIfTI header ({type(error).__name__}: {error})") from None
    if name.endswith(ITK_SUFFIXES):
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise DataError(f"{path}: cannot read header ({str(error).strip().splitlines()[-1]})") from None
        return tuple(reader.GetSize()[:3])
    return read_volume(path).source_shape

"""DICOM: pixel decoding (pydicom with the pylibjpeg plugins for JPEG, JPEG-LS, JPEG 2000), the modality LUT
(rescale slope/intercept), the file's VOI LUT or window or a named window, MONOCHROME1 inversion,
multi-frame files, and series folders stacked by ImagePositionPatient into one volume with spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radbench.data.intensity import IntensityConfig, linear_window, range_scale
from radbench.errors import DataError


def read_dataset(path: Path, pixels: bool = True):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=not pixels)
    except FileNotFoundError:
        raise DataError(f"{path}: DICOM file not found") from None
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a readable DICOM file ({error})") from None
    if "SOPClassUID" not in dataset and "PixelData" not in dataset and "Rows" not in dataset:
        raise DataError(f"{path}: not a DICOM file (no DICOM header found)")
    if pixels and "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise DataError(f"{path}: DICOM file has no pixel data (SOP class {dataset.get('SOPClassUID', '?')})")
    return dataset


def decoded_pixels(dataset, path: Path) -> np.ndarray:
    try:
        return dataset.pixel_array
    except Exception as error:  # decoders raise many types (RuntimeError, ValueError, NotImplementedError, ...)
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise DataError(f"{path}: cannot decode pixel data ({name}): {str(error).strip().splitlines()[0]}") from None


def modality_values(dataset, pixels: np.ndarray) -> np.ndarray:
    """Stored values -> modality units (e.g. Hounsfield units), per pydicom's apply_modality_lut."""
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)


def _voi_output_range(dataset) -> tuple[float, float]:
    """The output range of pydicom's apply_voi_lut for this dataset (PS3.3 C.11.2)."""
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if dataset.get("ModalityLUTSequence"):
        bits = int(dataset.ModalityLUTSequence[0].LUTDescriptor[2])
        low, high = 0.0, float(2**bits - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2 ** int(dataset.BitsStored) - 1)
    else:
        low, high = -float(2 ** (int(dataset.BitsStored) - 1)), float(2 ** (int(dataset.BitsStored) - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def has_file_window(dataset) -> bool:
    return "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset)


def display_values(dataset, values: np.ndarray, intensity: IntensityConfig | None) -> np.ndarray:
    """Modality values -> [0, 1]: a named/explicit window, else the file's own VOI LUT or window (first one),
    else the image's range; MONOCHROME1 (bright = low values) is inverted afterwards."""
    from pydicom.pixels import apply_voi_lut

    intensity = intensity or IntensityConfig()
    if intensity.center_width is not None:
        out = linear_window(values, *intensity.center_width)
    elif intensity.percentiles is not None:
        from radbench.data.intensity import percentile_scale

        out = percentile_scale(values, *intensity.percentiles)
    elif has_file_window(dataset):
        low, high = _voi_output_range(dataset)
        if "VOILUTSequence" in dataset and np.array_equal(values, np.round(values)):
            values = values.astype(np.int64)  # LUTs are indexed by integer values
        out = range_scale(apply_voi_lut(values, dataset, index=0), low, high)
    else:
        out = range_scale(values)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def read_dicom_image(path: Path, intensity: IntensityConfig | None = None) -> np.ndarray:
    """A single-frame DICOM as HxW float32 in [0, 1] (grayscale) or HxWx3 uint8 (colour)."""
    dataset = read_dataset(path)
    pixels = decoded_pixels(dataset, path)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    colour = int(dataset.get("SamplesPerPixel", 1)) == 3
    if frames > 1:
        raise DataError(f"{path}: multi-frame DICOM ({frames} frames) is a volume; read it with `volume:` settings")
    if colour:
        return np.asarray(pixels, dtype=np.uint8) if pixels.dtype == np.uint8 else range_scale(pixels)
    return display_values(dataset, modality_values(dataset, pixels), intensity)


def read_dicom_frames(path: Path) -> tuple[np.ndarray, object]:
    """All frames of a (multi-frame) grayscale DICOM in modality units, (F, H, W), and its dataset."""
    dataset = read_dataset(path)
    pixels = decoded_pixels(dataset, path)
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{path}: colour DICOM cannot be read as a volume")
    if pixels.ndim == 2:
        pixels = pixels[None]
    return modality_values(dataset, pixels).astype(np.float32), dataset

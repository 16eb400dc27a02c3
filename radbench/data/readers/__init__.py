"""File readers. 2D: PNG/JPEG/TIFF (8 and 16 bit) and single-frame DICOM; 3D: see `volume`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radbench.data.intensity import IntensityConfig
from radbench.data.readers.image import PIL_EXTENSIONS, read_pil_image

DICOM_EXTENSIONS = (".dcm", ".dicom")
IMAGE_EXTENSIONS = PIL_EXTENSIONS + DICOM_EXTENSIONS


def is_dicom(path: Path) -> bool:
    from radbench.data.readers.volume import _has_dicom_magic

    return path.suffix.lower() in DICOM_EXTENSIONS or (path.suffix == "" and _has_dicom_magic(path))


def read_image(path: Path, intensity: IntensityConfig | None = None) -> np.ndarray:
    """HxW or HxWx3: uint8 as stored, or float32 in [0, 1] after windowing / range scaling."""
    path = Path(path)
    if is_dicom(path):
        from radbench.data.readers.dicom import read_dicom_image

        return read_dicom_image(path, intensity)
    image = read_pil_image(path)
    if intensity is not None and (intensity.window is not None or intensity.percentiles is not None):
        from radbench.data.intensity import apply_intensity

        return apply_intensity(image.astype(np.float32), intensity, "range")
    return image


__all__ = ["DICOM_EXTENSIONS", "IMAGE_EXTENSIONS", "is_dicom", "read_image"]

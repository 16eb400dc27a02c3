"""PNG/JPEG/TIFF decoding with Pillow, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radbench.errors import DataError

PIL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_pil_image(path: Path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF as HxW (grayscale, 8 or 16 bit) or HxWx3 (colour) array.

    RGBA/LA/palette images drop alpha (a few NIH ChestX-ray14 PNGs are RGBA)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("RGBA", "P", "CMYK", "YCbCr"):
                image = image.convert("RGB")
            elif mode == "LA":
                image = image.convert("L")
            elif mode == "1":
                image = image.convert("L")
            array = np.asarray(image)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({error})") from None
    if array.ndim == 3 and array.shape[2] == 3 and _is_gray(array):
        array = array[..., 0]
    if array.ndim not in (2, 3) or array.size == 0:
        raise DataError(f"{path}: unsupported image shape {array.shape}")
    return array


def _is_gray(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]))

"""Acquisition shifts applied to test images only: noise, blur, contrast, gamma, JPEG, down-then-up sampling, each
at five severities. The parameter of each severity follows MedMNIST-C (Di Salvo et al., 2024; its `registry.py`):
the chest X-ray table (chestmnist) for `modality: xray`, the abdominal CT table (organamnist) for `ct`. Its
package needs ImageMagick and is not used; the operations are written here on float images in [0, 1]."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np

# MedMNIST-C parameters per severity 1..5: noise sigma / photon count / amount, blur kernel size (px), contrast and
# gamma factors, JPEG quality, pixelate resize factor
PARAMETERS: dict[str, dict[str, tuple[float, ...]]] = {
    "xray": {
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "shot_noise": (60, 25, 18, 10, 5),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "blur": (3, 5, 7, 9, 11),
        "contrast": (0.9, 0.8, 0.7, 0.6, 0.4),
        "brightness": (0.9, 0.8, 0.7, 0.6, 0.5),
        "gamma": (1.1, 1.2, 1.3, 1.4, 1.6),
        "jpeg": (50, 30, 15, 10, 7),
        "downsample": (0.30, 0.25, 0.20, 0.15, 0.10),
    },
    "ct": {
        "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
        "shot_noise": (200, 100, 50, 25, 15),
        "speckle_noise": (0.05, 0.10, 0.20, 0.30, 0.40),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.08),
        "blur": (11, 13, 15, 17, 21),
        "contrast": (0.8, 0.7, 0.6, 0.55, 0.5),
        "brightness": (0.8, 0.75, 0.7, 0.65, 0.60),
        "gamma": (1.3, 1.4, 1.6, 1.8, 2.0),
        "jpeg": (50, 30, 15, 10, 7),
        "downsample": (0.7, 0.6, 0.5, 0.40, 0.35),
    },
}
DEFAULT_KINDS = ("gaussian_noise", "shot_noise", "blur", "contrast", "gamma", "jpeg", "downsample")
KINDS = tuple(PARAMETERS["xray"])
CORRUPTION_VERSION = 2  # bump when an operation changes: the corrupted images' features are then re-extracted


def _gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(scale=sigma, size=x.shape)


def _shot_noise(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(x * photons) / photons


def _speckle_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x * (1 + rng.normal(scale=sigma, size=x.shape))


def _impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    hit = rng.random(x.shape[:2]) < amount  # salt and pepper in equal parts, all channels of a pixel alike
    salt = rng.random(x.shape[:2]) < 0.5
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def _blur(x: np.ndarray, kernel: float, rng: np.random.Generator) -> np.ndarray:
    """MedMNIST-C's blur: torchvision's gaussian_blur with the kernel size (its sigma, its reflect padding that skips
    the edge pixel), on the 0-255 values in float32 as it computes them from a uint8 image, so that the rounded
    result equals MedMNIST-C's bit for bit. Images smaller than the kernel's reach: scipy's equivalent padding."""
    import torch
    import torchvision.transforms.functional as TF

    size = int(kernel)
    channels_last = x.ndim == 3
    planes = np.moveaxis(x, -1, 0) if channels_last else x[None]
    if min(planes.shape[1:]) <= size // 2:
        from scipy.ndimage import gaussian_filter

        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # the sigma torchvision derives from a kernel size
        blurred = gaussian_filter(planes, (0, sigma, sigma), mode="mirror", truncate=((size - 1) // 2) / sigma)
    else:
        values = torch.from_numpy(np.ascontiguousarray(planes * 255.0, dtype=np.float32))
        blurred = TF.gaussian_blur(values, kernel_size=size).numpy().astype(np.float64) / 255.0
    return np.moveaxis(blurred, 0, -1) if channels_last else blurred[0]


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean()
    return mean + factor * (x - mean)


def _brightness(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return x * factor


def _gamma(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x, 0, 1) ** gamma


def _pil(x: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8))


def _jpeg(x: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    _pil(x).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer), dtype=np.float64) / 255.0


def _downsample(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    image = _pil(x)
    width, height = image.size
    small = image.resize((max(1, int(width * factor)), max(1, int(height * factor))), Image.BOX)
    return np.asarray(small.resize((width, height), Image.BOX), dtype=np.float64) / 255.0


OPERATIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "speckle_noise": _speckle_noise,
    "impulse_noise": _impulse_noise, "blur": _blur, "contrast": _contrast, "brightness": _brightness,
    "gamma": _gamma, "jpeg": _jpeg, "downsample": _downsample,
}


def corrupt(image: np.ndarray, kind: str, severity: int, modality: str = "xray",
            rng: np.random.Generator | None = None) -> np.ndarray:
    """`image` corrupted at `severity` (1-5), returned in its own dtype and value range."""
    parameter = PARAMETERS[modality][kind][severity - 1]
    rng = rng or np.random.default_rng(0)
    x, scale = _unit_range(image)
    out = np.clip(OPERATIONS[kind](x, parameter, rng), 0.0, 1.0)
    if np.issubdtype(image.dtype, np.integer):
        return np.round(out * scale).astype(image.dtype)
    return (out * scale).astype(image.dtype)


def _unit_range(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image scaled to [0, 1] (integer images by their dtype's range, float images by their maximum when above
    1), and the scale that maps it back."""
    if np.issubdtype(image.dtype, np.integer):
        scale = float(np.iinfo(image.dtype).max)
    else:
        scale = max(1.0, float(np.max(image)) if image.size else 1.0)
    return image.astype(np.float64) / scale, scale


@dataclass(frozen=True)
class CorruptedImages:
    """An ImageSource whose every image is corrupted on access; the noise of image i depends only on (seed, kind,
    severity, i's sample position), so a rerun and every backbone see the same corrupted pixels."""

    base: object  # ImageSource
    kind: str
    severity: int
    modality: str
    seed: int = 0
    positions: np.ndarray | None = None  # positions in the uncorrupted split (after a subset)

    def __len__(self) -> int:
        return len(self.base)

    def load(self, index: int) -> np.ndarray:
        position = int(self.positions[index]) if self.positions is not None else index
        rng = np.random.default_rng([self.seed, KINDS.index(self.kind), self.severity, position])
        return corrupt(self.base.load(index), self.kind, self.severity, self.modality, rng)

    def subset(self, indices: np.ndarray) -> "CorruptedImages":
        indices = np.asarray(indices, dtype=np.int64)
        positions = self.positions[indices] if self.positions is not None else indices
        return CorruptedImages(self.base.subset(indices), self.kind, self.severity, self.modality, self.seed, positions)

    @property
    def in_memory(self) -> bool:
        return self.base.in_memory

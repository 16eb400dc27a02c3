"""Intensity mapping to [0, 1]: DICOM-standard windowing (named CT presets), percentile normalisation (MRI),
bit-depth scaling. Every reader hands back modality values (e.g. Hounsfield units) and this module decides
what the model sees."""

from __future__ import annotations

import numpy as np
from pydantic import field_validator, model_validator

from radbench.schema import StrictModel

# (center, width) in Hounsfield units, the usual CT presets
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


class IntensityConfig(StrictModel):
    """`window`: a preset name or [center, width]; `percentiles`: [low, high] (e.g. [0.5, 99.5] for MRI).
    Neither: DICOM files use their own VOI LUT / window when they carry one; volumes use percentiles
    [0.5, 99.5]; other images are scaled by their range."""

    window: str | tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value):
        if isinstance(value, str) and value not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {value!r}; use one of {', '.join(WINDOW_PRESETS)} or [center, width]")
        if isinstance(value, tuple) and value[1] < 1:
            raise ValueError("window width must be at least 1")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> "IntensityConfig":
        if self.window is not None and self.percentiles is not None:
            raise ValueError("give `window` or `percentiles`, not both")
        if self.percentiles is not None and not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        return self

    @property
    def center_width(self) -> tuple[float, float] | None:
        if self.window is None:
            return None
        return WINDOW_PRESETS[self.window] if isinstance(self.window, str) else tuple(self.window)


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear VOI function, mapped to [0, 1] instead of the output bit range."""
    values = np.asarray(values, dtype=np.float64)
    out = ((values - (center - 0.5)) / (width - 1) + 0.5)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    out = np.where(values <= low, 0.0, np.where(values > high, 1.0, out))
    return out.astype(np.float32)


def percentile_scale(values: np.ndarray, low: float, high: float, mask: np.ndarray | None = None) -> np.ndarray:
    sample = values[mask] if mask is not None and mask.any() else values
    lo, hi = np.percentile(sample, [low, high])
    return range_scale(values, lo, hi)


def range_scale(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    low = float(values.min()) if low is None else float(low)
    high = float(values.max()) if high is None else float(high)
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def apply_intensity(values: np.ndarray, config: IntensityConfig | None, default: str) -> np.ndarray:
    """Modality values -> float32 [0, 1]. `default` ("range" or "percentiles") applies when the config is empty."""
    config = config or IntensityConfig()
    if config.center_width is not None:
        return linear_window(values, *config.center_width)
    if config.percentiles is not None:
        return percentile_scale(values, *config.percentiles)
    if default == "percentiles":
        return percentile_scale(values, 0.5, 99.5)
    return range_scale(values)

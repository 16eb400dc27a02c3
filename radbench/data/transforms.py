"""Turning a decoded image into a normalised model input: intensity scaling, 3 channels, resize or pad."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch


def to_unit_float(image: np.ndarray) -> torch.Tensor:
    """HxW[xC] array -> (C, H, W) float32 in [0, 1].

    8-bit images are divided by 255; float images already in [0, 1] (readers' windowed output) are kept;
    other images are min-max scaled per image, because 16-bit radiographs rarely use the full range (12-bit
    data stored in 16 bits would otherwise be near black)."""
    import torch

    if not image.flags.writeable or not image.flags.c_contiguous:  # e.g. arrays viewing a PIL image
        image = np.array(image, order="C")
    tensor = torch.from_numpy(image)
    if tensor.ndim == 2:
        tensor = tensor[None]
    else:
        tensor = tensor.permute(2, 0, 1)
    if image.dtype == np.uint8:
        return tensor.float() / 255.0
    tensor = tensor.float()
    if image.dtype.kind == "f" and tensor.min() >= 0.0 and tensor.max() <= 1.0:
        return tensor
    low, high = tensor.min(), tensor.max()
    if high <= low:
        return torch.zeros_like(tensor)
    return (tensor - low) / (high - low)


CROP_FRACTION = 0.875  # resize: crop keeps the centre 224 of 256 (timm's and torchvision's evaluation crop)


@dataclass(frozen=True)
class Preprocess:
    """Deterministic input pipeline; its `identity` enters every feature-cache key."""

    image_size: int
    mode: Literal["resize", "pad", "crop"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    quantize: str | None = None  # set when images come from the preprocessing cache (uint8 / uint16)

    def identity(self) -> dict:
        return asdict(self)

    @classmethod
    def from_identity(cls, identity: dict) -> "Preprocess":
        """The pipeline an `identity()` describes (as stored in JSON: mean and std as lists)."""
        return cls(**{**identity, "mean": tuple(identity["mean"]), "std": tuple(identity["std"])})

    def fit_identity(self) -> dict:
        """What the size-fitting stage depends on (not the normalisation): the preprocessing cache key."""
        return {"image_size": self.image_size, "mode": self.mode, "interpolation": self.interpolation}

    def fit_unit(self, image: np.ndarray) -> torch.Tensor:
        """Decoded image -> (C, S, S) in [0, 1]: the part worth caching on disk."""
        return self.fit_size(to_unit_float(image))

    def normalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """(C, S, S) in [0, 1] -> 3 channels with the model's mean/std."""
        import torch

        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (to_three_channels(tensor) - mean) / std

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.normalize(self.fit_unit(image))

    def fit_size(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        size = self.image_size
        height, width = tensor.shape[-2:]
        if self.quantize is not None and (height, width) == (size, size):
            return tensor  # read from the preprocessing cache: already fitted (a second crop would cut it again)
        if self.mode == "resize":
            return self._resize(tensor, (size, size)) if (height, width) != (size, size) else tensor
        if self.mode == "crop":  # ImageNet evaluation: shorter side to size / 0.875 (224 <- 256), centre crop
            scale = size / CROP_FRACTION / min(height, width)
            height, width = max(size, round(height * scale)), max(size, round(width * scale))
            tensor = self._resize(tensor, (height, width))
            top, left = (height - size) // 2, (width - size) // 2
            return tensor[..., top:top + size, left:left + size]
        # pad: zero-pad smaller images into the centre (MedMNIST+ convention); shrink larger ones first
        if max(height, width) > size:
            scale = size / max(height, width)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
            tensor = self._resize(tensor, (height, width))
        top, left = (size - height) // 2, (size - width) // 2
        return F.pad(tensor, (left, size - width - left, top, size - height - top), value=0.0)

    def placement(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Where an image of this size lands in the S x S input: (top, left, fitted height, fitted width)."""
        size = self.image_size
        if self.mode == "crop":
            raise ValueError("resize mode crop drops the image's edges: classification only")
        if self.mode == "resize":
            return 0, 0, size, size
        if max(height, width) > size:
            scale = size / max(height, width)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
        return (size - height) // 2, (size - width) // 2, height, width

    def fit_mask(self, mask: np.ndarray) -> torch.Tensor:
        """A label map brought to the input grid like its image (nearest neighbour; padding is background)."""
        import torch
        import torch.nn.functional as F

        top, left, height, width = self.placement(*mask.shape)
        fitted = F.interpolate(torch.from_numpy(np.ascontiguousarray(mask))[None, None].float(), size=(height, width),
                               mode="nearest")[0, 0].long()
        out = torch.zeros((self.image_size, self.image_size), dtype=torch.long)
        out[top:top + height, left:left + width] = fitted
        return out

    def unfit(self, logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """(B, C, S, S) logits on the input grid -> (B, C, H, W) on the original image grid (bilinear)."""
        import torch.nn.functional as F

        top, left, height, width = self.placement(*shape)
        crop = logits[..., top:top + height, left:left + width]
        return F.interpolate(crop, size=tuple(shape), mode="bilinear", align_corners=False)

    def _resize(self, tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        import torch.nn.functional as F

        mode = self.interpolation if self.interpolation in ("bilinear", "bicubic", "nearest") else "bicubic"
        kwargs = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
        out = F.interpolate(tensor[None], size=size, mode=mode, **kwargs)[0]
        return out.clamp_(0.0, 1.0)


def to_three_channels(tensor: torch.Tensor) -> torch.Tensor:
    """Grayscale becomes 3 identical channels (not a red-channel-only filter); alpha is dropped."""
    channels = tensor.shape[0]
    if channels == 1:
        return tensor.expand(3, -1, -1).contiguous()
    if channels == 3:
        return tensor
    if channels == 4:
        return tensor[:3]
    raise ValueError(f"images with {channels} channels are not supported")

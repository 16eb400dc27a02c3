"""The views of one image a self-distillation step compares: `fixed` (N global views of one size, DINO-CXR) or
`multicrop` (2 global + M smaller local views, DINO). Built from torchvision's v2 transforms on tensors; every
image's views are drawn from a seed of their own, so the views of a sample do not depend on worker count,
batch composition or whether the run was resumed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from radbench.data.transforms import to_three_channels
from radbench.pretrain.config import AugmentConfig, PretrainConfig


class RandomIntensity(torch.nn.Module):
    """Radiograph intensity jitter on [0, 1] images: gain (brightness), contrast about the mean, gamma."""

    def __init__(self, brightness: float, contrast: float, gamma: tuple[float, float], probability: float):
        super().__init__()
        self.brightness, self.contrast, self.gamma, self.probability = brightness, contrast, gamma, probability

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.probability:
            return image
        gain = 1.0 + (float(torch.rand(())) * 2 - 1) * self.brightness
        contrast = 1.0 + (float(torch.rand(())) * 2 - 1) * self.contrast
        low, high = math.log(self.gamma[0]), math.log(self.gamma[1])
        gamma = math.exp(low + float(torch.rand(())) * (high - low))
        mean = image.mean()
        image = ((image * gain - mean) * contrast + mean).clamp(0.0, 1.0)
        return image.pow(gamma)


def view_transform(size: int, scale: tuple[float, float], blur: float, augment: AugmentConfig) -> v2.Compose:
    # DINO's kernel: 23 px at 224 (about a tenth of the view), odd; sigma 0.1-2.0 px
    kernel = max(3, int(size * 0.1) // 2 * 2 + 1)
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(augment.horizontal_flip),
        v2.RandomApply([v2.RandomRotation(augment.rotation_degrees,
                                          interpolation=v2.InterpolationMode.BILINEAR)], p=0.5),
        RandomIntensity(augment.brightness, augment.contrast, augment.gamma, augment.intensity_probability),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
    ])


@dataclass
class ViewMaker:
    """image (C, S, S) in [0, 1] -> list of normalised 3-channel views: globals first, then locals."""

    transforms: list[v2.Compose]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    n_global: int

    @classmethod
    def from_config(cls, cfg: PretrainConfig, mean, std) -> "ViewMaker":
        n_global, n_local = cfg.n_views()
        blur = cfg.augment.blur
        transforms = [view_transform(cfg.image_size, cfg.global_scale, blur[min(i, 2)], cfg.augment)
                      for i in range(n_global)]
        transforms += [view_transform(cfg.local_size, cfg.local_scale, blur[2], cfg.augment) for _ in range(n_local)]
        return cls(transforms, tuple(mean), tuple(std), n_global)

    def __call__(self, image: torch.Tensor, seed: int) -> list[torch.Tensor]:
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            views = [t(image) for t in self.transforms]
        return [(to_three_channels(v.clamp(0.0, 1.0)) - mean) / std for v in views]

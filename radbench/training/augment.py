"""Training augmentations on [0, 1] image tensors at the input size: random resized crop, flip, rotation.
Configurable per protocol, and off for modalities where they mislead (e.g. flips of laterality-bearing data)."""

from __future__ import annotations

from pydantic import Field, model_serializer

from radbench.schema import StrictModel

ADDED_LATER = ("color_jitter",)  # left out of a dump (and so of job keys) while unset: older stores resume


class AugmentConfig(StrictModel):
    crop_scale: tuple[float, float] | None = (0.7, 1.0)  # RandomResizedCrop area range; null: no crop
    hflip: bool = True
    vflip: bool = False
    rotation: float = Field(default=10.0, ge=0, le=180)  # degrees, uniformly in [-rotation, rotation]
    # torchvision ColorJitter: [brightness, contrast, saturation, hue] (hue at most 0.5); grey images take the
    # first two (saturation and hue leave a grey image grey)
    color_jitter: tuple[float, float, float, float] | None = None

    @model_serializer(mode="wrap")
    def _without_unset_later_keys(self, handler):
        dumped = handler(self)
        return {k: v for k, v in dumped.items() if not (k in ADDED_LATER and v is None)}


def build_augment(cfg: AugmentConfig | None, size: int):
    """A callable (C, S, S) -> (C, S, S), or None when augmentation is off."""
    from torchvision.transforms import v2

    if cfg is None:
        return None
    steps = []
    if cfg.crop_scale is not None:
        steps.append(v2.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), antialias=True))
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip())
    if cfg.rotation > 0:
        steps.append(v2.RandomRotation(cfg.rotation))
    if cfg.color_jitter is not None:
        brightness, contrast, saturation, hue = cfg.color_jitter
        steps.append(v2.ColorJitter(brightness, contrast, saturation, min(0.5, hue)))
    return v2.Compose(steps) if steps else None


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The random draws of one sample in one epoch (augmentation, views): a seed of their own, so they do not
    depend on which process or loader worker handles the sample, nor on where a resumed run started."""
    return (seed * 1_000_003 + epoch * 100_003 + position) % (2**63 - 1)


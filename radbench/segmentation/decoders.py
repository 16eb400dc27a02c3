"""Dense features and the decoders that read them.

`dense_taps` returns feature maps (B, C, h, w) from several depths through timm's `forward_intermediates`:
for ViTs the patch tokens of evenly spaced blocks, normed, registers and CLS removed, at any input size
(position embeddings interpolated); for CNNs the last stages' outputs. Every decoder takes (taps, image)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radbench.errors import BackboneError


def tap_indices(model: nn.Module, count: int) -> list[int]:
    """`count` evenly spaced block indices ending at the last block (ViTs), or the last `count` stages (CNNs)."""
    blocks = getattr(model, "blocks", None)
    if blocks is not None:
        depth = len(blocks)
        return sorted({max(0, round((i + 1) * depth / count) - 1) for i in range(count)})
    stages = len(getattr(model, "feature_info", []))
    if stages == 0:
        raise BackboneError(f"{type(model).__name__} exposes no feature stages for dense prediction")
    return list(range(max(0, stages - count), stages))


def dense_taps(model: nn.Module, images: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
    return model.forward_intermediates(images, indices=indices, norm=True, output_fmt="NCHW", intermediates_only=True)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(True),
    )


class LinearDecoder(nn.Module):
    """DINOv2's linear segmentation head: BatchNorm + 1x1 conv on the last tap, bilinear upsampling."""

    taps = 1

    def __init__(self, channels: list[int], num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels[-1])
        self.classify = nn.Conv2d(channels[-1], num_classes, 1)

    def forward(self, taps: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        logits = self.classify(self.norm(taps[-1]))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


class UNetDecoder(nn.Module):
    """U-Net-style decoder over several taps: the deepest tap is upsampled x2 per step and fused with the
    projection of the next shallower tap; a light convolutional stem on the image adds full-resolution
    detail before the classifier (as eva's decoders do, so small-patch models do not win by resolution alone)."""

    taps = 4

    def __init__(self, channels: list[int], num_classes: int, width: int = 128, stem: int = 32):
        super().__init__()
        self.project = nn.ModuleList([nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width),
                                                    nn.ReLU(True)) for c in channels])
        self.fuse = nn.ModuleList([conv_block(2 * width, width) for _ in channels[:-1]])
        self.stem = conv_block(3, stem)
        self.head = nn.Sequential(conv_block(width + stem, width // 2), nn.Conv2d(width // 2, num_classes, 1))

    def forward(self, taps: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        x = self.project[-1](taps[-1])
        for index in reversed(range(len(taps) - 1)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            skip = F.interpolate(self.project[index](taps[index]), size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)
            x = self.fuse[index](torch.cat([x, skip], dim=1))
        x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([x, self.stem(image)], dim=1))


DECODERS = {"linear": LinearDecoder, "unet": UNetDecoder}


class Segmenter(nn.Module):
    """Backbone taps -> decoder. Input: an image batch, or (cached taps, image) when the frozen taps are cached."""

    def __init__(self, trunk: nn.Module, decoder: nn.Module, indices: list[int], train_backbone: bool):
        super().__init__()
        self.trunk, self.decoder, self.indices, self.train_backbone = trunk, decoder, indices, train_backbone
        self.trunk.requires_grad_(train_backbone)

    def forward(self, batch) -> torch.Tensor:
        if isinstance(batch, (list, tuple)):
            taps, image = batch
            return self.decoder([t.float() for t in taps], image)
        if self.train_backbone:
            taps = dense_taps(self.trunk, batch, self.indices)
        else:
            with torch.no_grad():
                taps = dense_taps(self.trunk, batch, self.indices)
        return self.decoder(taps, batch)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_backbone:
            self.trunk.eval()  # a frozen backbone keeps its eval-mode behaviour
        return self


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground classes (batch-level), pixels == ignore_index left out."""
    valid = target != ignore_index
    ce = F.cross_entropy(logits, target.clamp_min(0) * valid + ignore_index * ~valid, ignore_index=ignore_index)
    probabilities = logits.softmax(1)
    onehot = F.one_hot(target.clamp_min(0), logits.shape[1]).permute(0, 3, 1, 2).float()
    mask = valid[:, None].float()
    intersection = (probabilities * onehot * mask).sum(dim=(0, 2, 3))[1:]
    total = ((probabilities + onehot) * mask).sum(dim=(0, 2, 3))[1:]
    dice = 1 - (2 * intersection + 1e-5) / (total + 1e-5)
    return ce + dice.mean()

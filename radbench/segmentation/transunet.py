"""TransUNet (Chen et al. 2021), the from-scratch segmentation baseline Baharoon et al. compare DINOv2 against:
a hybrid encoder — ResNet-50 (v2) stages, then a ViT on the 1/16-scale feature map (timm's `vit_base_r50_s16_224`,
from scratch or with its ImageNet weights) — and a cascaded upsampler: four x2 steps (512 -> 256 -> 128 -> 64 -> 16
channels), the first three fused with the ResNet's 1/8, 1/4 and 1/2-scale features, then a 3x3 classifier.

The ResNet runs once: its stage outputs are the skips, and its last one goes through the ViT's patch projection and
blocks exactly as timm's HybridEmbed + VisionTransformer forward would (tests/test_segmentation.py checks the
tokens against timm's forward_features)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class UpStep(nn.Module):
    """x2 bilinear upsampling, concatenation with a skip (if any), two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(in_channels + skip_channels, out_channels),
                                   conv_bn_relu(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=True)
                           if skip.shape[-2:] != x.shape[-2:] else skip], dim=1)
        return self.convs(x)


class TransUNet(nn.Module):
    DECODER = (256, 128, 64, 16)

    def __init__(self, num_classes: int, image_size: int, pretrained: bool = False,
                 encoder: str = "vit_base_r50_s16_224", **encoder_kwargs):
        super().__init__()
        import timm

        self.encoder = timm.create_model(encoder, pretrained=pretrained, num_classes=0, img_size=image_size,
                                         **encoder_kwargs)
        backbone = getattr(self.encoder.patch_embed, "backbone", None)
        if backbone is None or not hasattr(backbone, "forward_intermediates"):
            raise ValueError(f"{encoder} is not a hybrid CNN + ViT (TransUNet needs one, e.g. vit_base_r50_s16_224)")
        channels = [info["num_chs"] for info in backbone.feature_info]  # 1/2, 1/4, 1/8, 1/16
        self.stages = len(channels)
        self.conv_more = conv_bn_relu(self.encoder.embed_dim, 512)
        skips = [channels[-2], channels[-3], channels[-4], 0]  # 1/8, 1/4, 1/2, none
        widths = [512, *self.DECODER]
        self.steps = nn.ModuleList(UpStep(widths[i], skips[i], widths[i + 1]) for i in range(4))
        self.classify = nn.Conv2d(self.DECODER[-1], num_classes, 3, padding=1)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The ViT's normed patch tokens (B, N, D) and the ResNet's stage outputs, from one pass."""
        encoder = self.encoder
        maps = encoder.patch_embed.backbone.forward_intermediates(images, indices=list(range(self.stages)),
                                                                  intermediates_only=True)
        x = encoder.patch_embed.proj(maps[-1]).flatten(2).transpose(1, 2)
        x = encoder.norm_pre(encoder.patch_drop(encoder._pos_embed(x)))
        x = encoder.norm(encoder.blocks(x))
        return x[:, encoder.num_prefix_tokens:], maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens, maps = self.tokens(images)
        side = self.encoder.patch_embed.grid_size
        x = self.conv_more(tokens.transpose(1, 2).reshape(len(images), -1, *side))
        for step, skip in zip(self.steps, [maps[-2], maps[-3], maps[-4], None]):
            x = step(x, skip)
        logits = self.classify(x)
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits

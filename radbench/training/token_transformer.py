"""A DeiT-style transformer head on a frozen backbone's tokens, and its live (uncached) variant."""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from radbench.features.tokens import frozen_tokens


class TokenTransformer(nn.Module):
    def __init__(self, tokens: int, dim: int, width: int, depth: int, num_heads: int, num_classes: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(dim, width), nn.LayerNorm(width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
        self.blocks = nn.Sequential(*[Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.project(tokens)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class LiveTokens(nn.Module):
    """Frozen backbone + transformer head, for tokens that did not fit the cache."""

    def __init__(self, backbone, head: TokenTransformer):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.trunk = backbone.model.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = frozen_tokens(self.backbone, images)
        return self.head(tokens.float())

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # the frozen backbone stays in eval mode (dropout, norms)
        return self

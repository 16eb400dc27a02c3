"""A DeiT-style transformer head on a backbone's tokens: on cached frozen tokens, on a frozen backbone run live,
or trained together with the backbone; optionally initialised from a pretrained DeiT (Foundation-Medical's
appended classifier: its blocks, CLS token and norm, position embeddings resampled to the backbone's grid)."""

from __future__ import annotations

import copy
import math

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


class TunedTokens(nn.Module):
    """Backbone and transformer head trained together (the backbone's tokens with gradients)."""

    def __init__(self, trunk: nn.Module, head: TokenTransformer):
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.trunk.forward_features(images)
        return self.head((out.flatten(2).transpose(1, 2) if out.ndim == 4 else out).float())


def from_deit(deit: nn.Module, tokens: int, dim: int, num_classes: int) -> TokenTransformer:
    """A head whose blocks, CLS token and final norm are copies of `deit`'s, for `tokens` backbone tokens of width
    `dim`. Position embeddings: the head's own CLS and the backbone's prefix tokens (CLS, registers) take DeiT's
    CLS position; the patch grid takes DeiT's grid resampled (bicubic) to the backbone's grid."""
    from timm.layers import resample_abs_pos_embed

    blocks = list(deit.blocks)
    head = TokenTransformer(tokens, dim, deit.embed_dim, len(blocks), blocks[0].attn.num_heads, num_classes)
    head.blocks = nn.Sequential(*copy.deepcopy(blocks))
    head.norm = copy.deepcopy(deit.norm)
    prefix = deit.num_prefix_tokens
    side = math.isqrt(tokens)
    backbone_prefix = tokens - side * side
    deit_side = math.isqrt(deit.pos_embed.shape[1] - prefix)
    with torch.no_grad():
        head.cls_token.copy_(deit.cls_token)
        grid = resample_abs_pos_embed(deit.pos_embed, [side, side], [deit_side, deit_side], num_prefix_tokens=prefix)
        cls_position = grid[:, :1]
        head.pos_embed.copy_(torch.cat([cls_position, cls_position.expand(1, backbone_prefix, -1), grid[:, prefix:]], 1))
    return head

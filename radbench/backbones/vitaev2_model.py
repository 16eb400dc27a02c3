"""ViTAEv2 (Zhang et al. 2023, DINO-CXR's backbone), built natively: neither timm nor transformers has it.

The architecture of the official code (github.com/ViTAE-Transformer/ViTAE-Transformer, Image-Classification/vitaev2),
written again here with the same module names, so that its published checkpoints (and DINO-CXR's, saved from the
same classes) load as they are. A stage is a reduction cell (RC: multi-dilation convolutions -> window or global
attention, plus a parallel convolution branch) and normal cells (NC: attention + parallel convolutions + MLP).
Forward equality with the official code on the same weights is tested (tests/test_vitaev2.py).

The published variants all use `relative_pos=False`, so the official `relative_position_index` buffers are
constants no computation reads; they are not kept here (the loader drops them from checkpoints)."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# the three published variants (ViTAEv2.py of the official code)
VARIANTS = {
    "ViTAEv2_S": dict(embed_dims=[64, 64, 128, 256], token_dims=[64, 128, 256, 512], NC_depth=[2, 2, 8, 2],
                      NC_heads=[1, 2, 4, 8], RC_heads=[1, 1, 2, 4]),
    "ViTAEv2_48M": dict(embed_dims=[64, 64, 192, 384], token_dims=[96, 192, 384, 768], NC_depth=[2, 2, 11, 2],
                        NC_heads=[1, 2, 4, 8], RC_heads=[1, 1, 2, 4]),
    "ViTAEv2_B": dict(embed_dims=[96, 96, 256, 512], token_dims=[128, 256, 512, 1024], NC_depth=[2, 2, 12, 2],
                      NC_heads=[1, 4, 8, 16], RC_heads=[1, 1, 4, 8]),
}
SHARED = dict(downsample_ratios=[4, 2, 2, 2], kernel_size=[7, 3, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 2]],
              RC_tokens_type=["window", "window", "transformer", "transformer"],
              NC_tokens_type=["window", "window", "transformer", "transformer"],
              NC_group=[1, 32, 64, 128], RC_group=[1, 16, 32, 64], mlp_ratio=4.0, window_size=7)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_features or in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention from `in_dim` channels to `out_dim`; `value_skip` adds the values back (the
    reduction cell's global attention changes width, so its residual is v, as in T2T)."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, qkv_bias: bool, value_skip: bool = False,
                 scale_first: bool = False):
        super().__init__()
        self.heads, self.out_dim, self.value_skip, self.scale_first = heads, out_dim, value_skip, scale_first
        self.scale = (out_dim // heads) ** -0.5
        self.qkv = nn.Linear(in_dim, out_dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x):
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # the official window attention scales q first, its global attention the product: kept, for equal rounding
        scores = (q * self.scale) @ k.transpose(-2, -1) if self.scale_first else (q @ k.transpose(-2, -1)) * self.scale
        weights = scores.softmax(dim=-1)
        out = self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, self.out_dim))
        if self.value_skip:
            out = out + v.transpose(1, 2).reshape(batch, tokens, self.out_dim)
        return out


def windowed(attention: nn.Module, x: torch.Tensor, side: int, window: int, out_dim: int) -> torch.Tensor:
    """Attention within non-overlapping `window` x `window` squares of a (B, side*side, C) token grid. The grid is
    zero-padded (evenly, extra at the bottom/right) to a multiple of the window and the padding attends unmasked,
    as the official code does; the padding is cropped afterwards."""
    batch, _, channels = x.shape
    pad = (window - side % window) % window
    grid = x.reshape(batch, side, side, channels)
    if pad:
        before = pad // 2
        grid = F.pad(grid, (0, 0, before, pad - before, before, pad - before))
    padded = side + pad
    n = padded // window
    windows = grid.reshape(batch, n, window, n, window, channels).permute(0, 1, 3, 2, 4, 5)
    out = attention(windows.reshape(-1, window * window, channels))
    out = out.reshape(batch, n, n, window, window, out_dim).permute(0, 1, 3, 2, 4, 5).reshape(batch, padded, padded,
                                                                                             out_dim)
    if pad:
        before = pad // 2
        out = out[:, before:before + side, before:before + side]
    return out.reshape(batch, side * side, out_dim)


def tokens_to_map(x: torch.Tensor) -> torch.Tensor:
    batch, tokens, channels = x.shape
    side = math.isqrt(tokens)
    return x.transpose(1, 2).reshape(batch, channels, side, side)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class PRM(nn.Module):
    """Pyramid reduction: one strided convolution per dilation, concatenated along channels (dilation-major)."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int, dilations: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_chans, embed_dim, kernel_size, stride=stride, dilation=d,
                                    padding=math.ceil(((kernel_size - 1) * d + 1 - stride) / 2)), nn.GELU())
            for d in dilations)
        self.out_chans = embed_dim * len(dilations)

    def forward(self, x):
        return torch.cat([conv(x) for conv in self.convs], dim=1)


def conv_branch(widths: list[int], strides: list[int], groups: int) -> nn.Sequential:
    """The parallel convolution module (PCM): conv-BN-SiLU, conv-BN-SiLU, conv through `widths` (4 numbers)."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=strides[i], padding=1, groups=groups))
        if i < 2:
            layers += [nn.BatchNorm2d(widths[i + 1]), nn.SiLU(inplace=True)]
    return nn.Sequential(*layers)


class ReductionAttention(nn.Module):
    """The reduction cell's attention block (official: WindowTransformerBlock / Token_transformer): norm1, attn,
    norm2, mlp (ratio 1), LayerNorm eps 1e-5."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, windowed_attention: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim)
        # window attention has a qkv bias; the global (T2T) one has none, and adds its values back
        self.attn = Attention(in_dim, out_dim, heads, qkv_bias=windowed_attention, value_skip=not windowed_attention,
                              scale_first=windowed_attention)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, out_dim)


class ReductionCell(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, token_dim: int, ratio: int, kernel_size: int, heads: int,
                 dilations: list[int], tokens_type: str, group: int, window_size: int):
        super().__init__()
        if tokens_type not in ("window", "transformer"):
            raise ValueError(f"ViTAEv2 reduction cell tokens_type {tokens_type!r}: only window / transformer are built")
        self.tokens_type, self.window_size, self.token_dim = tokens_type, window_size, token_dim
        strides, residual = [], ratio // 2
        for _ in range(3):
            strides.append(2 if residual > 0 else 1)
            residual //= 2
        self.PCM = conv_branch([in_chans, embed_dim, embed_dim, token_dim], strides, group)
        self.PRM = PRM(in_chans, embed_dim, kernel_size, ratio, dilations)
        self.attn = ReductionAttention(self.PRM.out_chans, token_dim, heads, tokens_type == "window")

    def forward(self, x):
        if x.ndim == 3:
            x = tokens_to_map(x)
        reduced = self.PRM(x)
        side = reduced.shape[-1]
        tokens = self.attn.norm1(map_to_tokens(reduced))
        if self.tokens_type == "window":
            tokens = windowed(self.attn.attn, tokens, side, self.window_size, self.token_dim)
        else:
            tokens = self.attn.attn(tokens)
        tokens = tokens + map_to_tokens(self.PCM(x))
        return tokens + self.attn.mlp(self.attn.norm2(tokens))


class NormalCell(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, group: int, tokens_type: str, window_size: int):
        super().__init__()
        if tokens_type not in ("window", "transformer"):
            raise ValueError(f"ViTAEv2 normal cell tokens_type {tokens_type!r}: only window / transformer are built")
        self.tokens_type, self.window_size, self.dim = tokens_type, window_size, dim
        norm = partial(nn.LayerNorm, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.norm1 = norm(dim)
        self.attn = Attention(dim, dim, heads, qkv_bias=True, scale_first=tokens_type == "window")
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, hidden)
        self.PCM = conv_branch([dim, hidden, dim, dim], [1, 1, 1], group)

    def forward(self, x):
        side = math.isqrt(x.shape[1])
        normed = self.norm1(x)
        if self.tokens_type == "window":
            attended = windowed(self.attn, normed, side, self.window_size, self.dim)
        else:
            attended = self.attn(normed)
        x = x + attended + map_to_tokens(self.PCM(tokens_to_map(x)))
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, RC: ReductionCell, NC: list[NormalCell]):
        super().__init__()
        self.RC = RC
        self.NC = nn.ModuleList(NC)

    def forward(self, x):
        x = self.RC(x)
        for cell in self.NC:
            x = cell(x)
        return x


class ViTAEv2(nn.Module):
    """Four stages (strides 4, 8, 16, 32); the image vector is the mean of the last stage's tokens. Offers the part
    of timm's interface radbench calls: forward_features / forward_head / forward_intermediates / feature_info."""

    def __init__(self, embed_dims, token_dims, NC_depth, NC_heads, RC_heads, downsample_ratios, kernel_size,
                 dilations, RC_tokens_type, NC_tokens_type, NC_group, RC_group, mlp_ratio, window_size,
                 in_chans: int = 3, num_classes: int = 0):
        super().__init__()
        layers, reduction = [], 1
        for i in range(len(token_dims)):
            rc = ReductionCell(in_chans, embed_dims[i], token_dims[i], downsample_ratios[i], kernel_size[i],
                               RC_heads[i], dilations[i], RC_tokens_type[i], RC_group[i], window_size)
            ncs = [NormalCell(token_dims[i], NC_heads[i], mlp_ratio, NC_group[i], NC_tokens_type[i], window_size)
                   for _ in range(NC_depth[i])]
            layers.append(BasicLayer(rc, ncs))
            in_chans, reduction = token_dims[i], reduction * downsample_ratios[i]
        self.layers = nn.ModuleList(layers)
        self.num_features = token_dims[-1]
        self.feature_info = [{"num_chs": dim, "reduction": 4 * 2 ** i, "module": f"layers.{i}"}
                             for i, dim in enumerate(token_dims)]
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):  # as the official code: truncated-normal linears, unit LayerNorms
        from timm.layers import trunc_normal_

        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward_features(self, images):
        x = images
        for layer in self.layers:
            x = layer(x)
        return x  # (B, tokens, C) of the last stage

    def forward_head(self, tokens, pre_logits: bool = False):
        pooled = tokens.mean(dim=1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, images):
        return self.forward_head(self.forward_features(images))

    def forward_intermediates(self, images, indices=None, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True):
        """Each wanted stage's tokens as a map (B, C, H/4..H/32, ...): what segmentation decoders tap."""
        if output_fmt != "NCHW":
            raise ValueError("ViTAEv2 gives NCHW feature maps only")
        wanted = set(range(len(self.layers)) if indices is None else indices)
        maps, x = [], images
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in wanted:
                maps.append(tokens_to_map(x))
        return maps


def vitaev2(variant: str, **overrides) -> ViTAEv2:
    """One of VARIANTS (e.g. `ViTAEv2_S`), with any constructor argument overridden (tests build tiny ones)."""
    return ViTAEv2(**{**SHARED, **VARIANTS[variant], **overrides})


def checkpoint_filter_fn(state: dict, model: nn.Module) -> dict:
    """Official checkpoints hold `relative_position_index` constants that this model does not keep (see above)."""
    return {key: value for key, value in state.items() if not key.endswith("relative_position_index")}

"""A backbone with a classification head, and the ways of adapting it: full fine-tuning with layer-wise lr
decay, LoRA (peft), BitFit (biases only), freezing the first k blocks, keeping only the first k blocks."""

from __future__ import annotations

import copy

import torch
from torch import nn

from radbench.backbones import FeatureBackbone
from radbench.errors import RadbenchError


class Classifier(nn.Module):
    """Backbone trunk -> pooled features (CLS token for ViTs, global pool for CNNs) -> linear head."""

    def __init__(self, trunk: nn.Module, dim: int, num_classes: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_head(self.trunk.forward_features(images), pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def fresh_classifier(backbone: FeatureBackbone, num_classes: int) -> Classifier:
    """A new classifier on a copy of the backbone (whose own weights are never trained, so stay pretrained)."""
    trunk = copy.deepcopy(backbone.model)
    trunk.requires_grad_(True).train()
    # the width extraction gives: what pre_logits returns (VGG: its 4096-d ConvMlp, not its 512 channels)
    return Classifier(trunk, getattr(backbone.model, "head_hidden_size", None) or backbone.model.num_features,
                      num_classes)


def blocks_of(trunk: nn.Module) -> nn.Sequential:
    blocks = getattr(trunk, "blocks", None)
    if blocks is None:
        raise RadbenchError(f"{type(trunk).__name__} has no transformer blocks to freeze or drop")
    return blocks


def freeze_first_blocks(model: Classifier, count: int) -> None:
    """Progressive freezing: the embedding and the first `count` blocks keep their pretrained weights."""
    trunk = model.trunk
    blocks = blocks_of(trunk)
    if count > len(blocks):
        raise RadbenchError(f"cannot freeze {count} blocks of a {len(blocks)}-block model")
    if count == 0:
        return
    for name in ("patch_embed", "cls_token", "reg_token", "pos_embed", "norm_pre"):
        part = getattr(trunk, name, None)
        if isinstance(part, nn.Module):
            part.requires_grad_(False)
        elif isinstance(part, nn.Parameter):
            part.requires_grad_(False)
    for block in blocks[:count]:
        block.requires_grad_(False)


def decapitate(trunk: nn.Module, keep: int) -> nn.Module:
    """Keep only the first `keep` blocks (and the final norm): the head then reads block `keep`'s output."""
    blocks = blocks_of(trunk)
    if not 1 <= keep <= len(blocks):
        raise RadbenchError(f"keep_blocks {keep} outside 1..{len(blocks)}")
    trunk.blocks = nn.Sequential(*list(blocks)[:keep])
    return trunk


def apply_bitfit(model: Classifier) -> None:
    """BitFit: only bias terms of the backbone (and the whole head) train."""
    for name, parameter in model.trunk.named_parameters():
        parameter.requires_grad_(name.endswith("bias"))
    model.head.requires_grad_(True)


def apply_lora(model: Classifier, rank: int, alpha: float, dropout: float, targets: list[str]) -> None:
    """LoRA adapters (peft) on the backbone's `targets` modules; the backbone's own weights are frozen."""
    from peft import LoraConfig, get_peft_model

    from radbench.backbones.architecture import resolve_lora_targets

    present = {name.rsplit(".", 1)[-1] for name, _ in model.trunk.named_modules()}
    resolved, _ = resolve_lora_targets(targets, present, getattr(model.trunk, "lora_target_names", {}))
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=resolved, bias="none")
    try:
        model.trunk = get_peft_model(model.trunk, config)
    except ValueError as error:
        raise RadbenchError(f"LoRA: {error}") from None
    model.head.requires_grad_(True)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def optimizer_groups(trunk: nn.Module | None, head: nn.Module, lr: float, head_lr: float, weight_decay: float,
                     layer_decay: float) -> list[dict]:
    """AdamW groups: layer-wise lr decay over the backbone (timm's grouping), no weight decay on biases and
    norms, the head (classifier or decoder) at its own lr. Frozen parameters are left out; LoRA adapters sit in
    their block's group. `trunk` None: only the head trains."""
    out = []
    if trunk is not None:
        base = trunk.get_base_model() if hasattr(trunk, "get_base_model") else trunk
        if layer_decay < 1.0 and hasattr(base, "group_matcher"):
            from timm.optim._param_groups import param_groups_layer_decay

            groups = param_groups_layer_decay(base, weight_decay=weight_decay, layer_decay=layer_decay)
        else:
            groups = _decay_split(base, weight_decay)
        for group in groups:
            params = [p for p in group["params"] if p.requires_grad]
            if params:
                out.append({"params": params, "weight_decay": group["weight_decay"],
                            "lr": lr * group.get("lr_scale", 1.0)})
    for group in _decay_split(head, weight_decay):
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            out.append({**group, "params": params, "lr": head_lr})
    return out


def _decay_split(module: nn.Module, weight_decay: float) -> list[dict]:
    named = list(module.named_parameters())
    return [{"params": [p for n, p in named if p.ndim > 1 and not n.endswith("bias")], "weight_decay": weight_decay},
            {"params": [p for n, p in named if p.ndim <= 1 or n.endswith("bias")], "weight_decay": 0.0}]

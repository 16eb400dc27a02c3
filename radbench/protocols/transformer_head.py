"""A small DeiT-style transformer head on the frozen backbone's tokens, instead of a linear head.

As in Foundation-Medical's appended DeiT: tokens -> Linear + LayerNorm -> its own CLS token and learned
position embedding -> `depth` transformer blocks -> LayerNorm -> linear classifier on its CLS. The frozen
tokens are cached on disk within `token_cache_gb` (else recomputed from the frozen backbone every batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolInput, ProtocolResult, ProtocolSpec, finish
from radbench.schema import PositiveFloat

if TYPE_CHECKING:
    from torch import nn

    from radbench.training.loop import TrainSettings


class TransformerHeadConfig(ProtocolConfigBase):
    epochs: int = Field(default=20, ge=1)
    lr: list[PositiveFloat] = Field(default=[1e-4], min_length=1)
    depth: int = Field(default=2, ge=1)
    width: int = Field(default=384, ge=8)
    num_heads: int = Field(default=6, ge=1)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    batch_size: int = Field(default=64, ge=1)
    patience: int | None = Field(default=None, ge=1)
    token_cache_gb: float = Field(default=8.0, ge=0)
    refit: bool = True


def run_transformer_head(cfg: TransformerHeadConfig, inputs: ProtocolInput) -> ProtocolResult:
    import torch

    from radbench.features.tokens import token_store
    from radbench.training.loop import (
        ConcatImages,
        TrainingImages,
        TrainSettings,
        classification_loss,
        peak_memory_mb,
        predict,
        train,
    )
    from radbench.training.models import optimizer_groups, parameter_counts
    from radbench.training.select import select_lr
    from radbench.training.token_transformer import LiveTokens, TokenTransformer

    context = inputs.images
    dataset, preprocess, backbone = context.dataset, context.preprocess, context.backbone
    store = token_store(backbone, dataset, preprocess, context.cache_folder, cfg.token_cache_gb,
                        inputs.device, context.precision, cfg.batch_size, inputs.reporter)
    tokens, dim = store.shape

    def data(splits: list[str]):
        targets = np.concatenate([inputs.targets[s] for s in splits])
        if store.cached is not None:
            return store.dataset(splits, targets)
        return TrainingImages(ConcatImages(*(dataset.splits[s].images for s in splits)), preprocess, targets)

    def loss(logits, targets):
        return classification_loss(inputs.task, logits, targets)

    def build() -> nn.Module:
        torch.manual_seed(inputs.seed)
        head = TokenTransformer(tokens, dim, cfg.width, cfg.depth, cfg.num_heads, dataset.num_classes)
        return head if store.cached is not None else LiveTokens(backbone, head)

    def settings(lr: float) -> TrainSettings:
        return TrainSettings(cfg.epochs, cfg.batch_size, lr, lr, cfg.weight_decay, 1.0, cfg.warmup_epochs, 1.0,
                             cfg.patience, inputs.device, context.precision, 0, inputs.seed)

    def groups(model: nn.Module, lr: float) -> list[dict]:
        head = model.head if isinstance(model, LiveTokens) else model
        return optimizer_groups(None, head, lr, lr, cfg.weight_decay, 1.0)

    evaluation = settings(cfg.lr[0])  # predicting reads the batch size and device, not the lr

    def val_scores(model):
        return predict(model, inputs.task, data(["val"]), evaluation)[0]

    def val_metric(model) -> float:
        return inputs.metrics(inputs.targets["val"], val_scores(model))[0][inputs.selection_metric]

    def fit(model, lr: float, validate: bool, stop_after: int | None):
        parts = ["train"] if validate else ["train", "val"]
        return train(model, groups(model, lr), data(parts), loss, settings(lr), inputs.reporter,
                     f"  transformer head lr={lr:g} on {'+'.join(parts)}: epochs",
                     validate=val_metric if validate else None, stop_after=stop_after)

    selection = select_lr(cfg.lr, build, fit, cfg.refit, val_scores)
    model, lr, best_epoch, chosen = selection.model, selection.lr, selection.best_epoch, selection.chosen
    test_scores, infer_ms = predict(model, inputs.task, data(["test"]), evaluation)
    candidates, seconds = selection.candidates, selection.seconds
    outcome = finish(inputs, candidates, chosen, selection.payloads[chosen], test_scores,
                     {"best_epoch": best_epoch, "tokens": [tokens, dim], "tokens_cached": store.cached is not None})
    outcome.selected = {"lr": lr, "epochs": best_epoch}
    head_model = model.head if isinstance(model, LiveTokens) else model
    trainable, head_total = parameter_counts(head_model)
    backbone_params = sum(p.numel() for p in backbone.model.parameters())
    outcome.costs = {"trainable_params": float(trainable), "total_params": float(head_total + backbone_params),
                     "train_seconds": seconds, "infer_ms_per_image": infer_ms + store.ms_per_image,
                     "peak_mem_mb": peak_memory_mb(inputs.device)}
    return outcome


PROTOCOLS.add("transformer_head", ProtocolSpec(
    "transformer_head", TransformerHeadConfig, run_transformer_head,
    "DeiT-style transformer head on frozen tokens (cached within a disk budget)", inputs="images"))

"""A small DeiT-style transformer classifier appended to the backbone's tokens, instead of a linear head.

As in Foundation-Medical's appended DeiT: tokens -> Linear + LayerNorm -> its own CLS token and position
embedding -> transformer blocks -> LayerNorm -> linear classifier on its CLS. Its four scenarios:
- frozen backbone (default): the frozen tokens are cached on disk within `token_cache_gb` (else recomputed from
  the frozen backbone every batch);
- `backbone: {train: true, lr, layer_decay}`: the backbone trains with the head (unfrozen + transformer);
- `init: <timm DeiT name>` (e.g. deit_base_patch16_224, with `init_weights: hub | none | <checkpoint>`): the head is
  that DeiT's blocks, CLS token and norm, its position embeddings resampled to the backbone's token grid;
- `keep_blocks: [k, ...]`: the backbone cut after block k (decapitation + transformer), one reported point per k."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    finish,
    one_point_per,
)
from radbench.protocols.segmentation import BackboneTraining
from radbench.schema import PositiveFloat, PositiveInt

if TYPE_CHECKING:
    from torch import nn

    from radbench.training.loop import TrainSettings


class TransformerHeadConfig(ProtocolConfigBase):
    epochs: int = Field(default=20, ge=1)
    lr: list[PositiveFloat] = Field(default=[1e-4], min_length=1)  # the head's learning rates (grid)
    depth: int = Field(default=2, ge=1)  # of a randomly initialised head (a DeiT init brings its own)
    width: int = Field(default=384, ge=8)
    num_heads: int = Field(default=6, ge=1)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    batch_size: int = Field(default=64, ge=1)
    patience: int | None = Field(default=None, ge=1)
    token_cache_gb: float = Field(default=8.0, ge=0)
    refit: bool = True
    backbone: BackboneTraining = BackboneTraining()  # train: true fine-tunes the backbone with the head
    init: str = "random"  # or a timm DeiT model name: the head starts from its pretrained blocks
    init_weights: str = "hub"  # of the `init` DeiT: hub | none | a checkpoint path
    keep_blocks: list[PositiveInt] | None = None  # decapitation + transformer: one point per k
    save_model: bool = False
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["cosine", "plateau"] = "cosine"  # after warmup: cosine decay, or lr / 10 at each plateau
    plateau_patience: int = Field(default=2, ge=1)
    added_later: ClassVar[tuple[str, ...]] = ("preset", "backbone", "init", "init_weights", "keep_blocks",
                                              "save_model", "optimizer", "schedule", "plateau_patience")


def _init_deit(cfg: TransformerHeadConfig):
    import timm

    from radbench.backbones.checkpoint import load_checkpoint

    hub = cfg.init_weights == "hub"
    deit = timm.create_model(cfg.init, pretrained=hub, num_classes=0)
    if cfg.init_weights not in ("hub", "none"):
        from pathlib import Path

        load_checkpoint(deit, Path(cfg.init_weights), head_prefixes=("head", "head_dist"))
    return deit


def _backbone_for(cfg: TransformerHeadConfig, backbone):
    """The backbone whose tokens the head reads: the study's, or a copy cut after block k."""
    if cfg.keep_blocks is None:
        return backbone
    from radbench.training.models import decapitate

    (keep,) = cfg.keep_blocks
    cut = copy.copy(backbone)
    cut.model = decapitate(copy.deepcopy(backbone.model), keep)
    return cut


def run_transformer_head(cfg: TransformerHeadConfig, inputs: ProtocolInput) -> ProtocolResult:
    import torch

    from radbench.features.tokens import token_shape, token_store
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
    from radbench.training.token_transformer import LiveTokens, TokenTransformer, TunedTokens, from_deit

    context = inputs.images
    dataset, preprocess = context.dataset, context.preprocess
    backbone = _backbone_for(cfg, context.backbone)
    tuned = cfg.backbone.train
    folder = context.cache_folder / (f"blocks{cfg.keep_blocks[0]}" if cfg.keep_blocks else "")
    if tuned:
        store = None
        tokens, dim = token_shape(backbone, preprocess.image_size, inputs.device)
    else:
        store = token_store(backbone, dataset, preprocess, folder, cfg.token_cache_gb, inputs.device,
                            context.precision, cfg.batch_size, inputs.reporter)
        tokens, dim = store.shape
    cached = store is not None and store.cached is not None
    deit = _init_deit(cfg) if cfg.init != "random" else None

    def data(splits: list[str]):
        targets = np.concatenate([context.item_targets(inputs.targets[s], s) for s in splits])
        if cached:
            return store.dataset(splits, targets)
        return TrainingImages(ConcatImages(*(dataset.splits[s].images for s in splits)), preprocess, targets)

    def loss(logits, targets):
        return classification_loss(inputs.task, logits, targets)

    def build() -> nn.Module:
        torch.manual_seed(inputs.seed)
        if deit is not None:
            head = from_deit(deit, tokens, dim, dataset.num_classes)
        else:
            head = TokenTransformer(tokens, dim, cfg.width, cfg.depth, cfg.num_heads, dataset.num_classes)
        if tuned:
            return TunedTokens(copy.deepcopy(backbone.model).requires_grad_(True).train(), head)
        return head if cached else LiveTokens(backbone, head)

    def settings(lr: float) -> TrainSettings:
        return TrainSettings(cfg.epochs, cfg.batch_size, lr, lr, cfg.weight_decay, cfg.backbone.layer_decay,
                             cfg.warmup_epochs, 1.0, cfg.patience, inputs.device, context.precision, 0, inputs.seed,
                             optimizer=cfg.optimizer, schedule=cfg.schedule, plateau_patience=cfg.plateau_patience)

    def groups(model: nn.Module, lr: float) -> list[dict]:
        if tuned:
            return optimizer_groups(model.trunk, model.head, cfg.backbone.lr, lr, cfg.weight_decay,
                                    cfg.backbone.layer_decay)
        head = model.head if isinstance(model, LiveTokens) else model
        return optimizer_groups(None, head, lr, lr, cfg.weight_decay, 1.0)

    evaluation = settings(cfg.lr[0])  # predicting reads the batch size and device, not the lr

    def val_scores(model):
        return context.per_sample(predict(model, inputs.task, data(["val"]), evaluation)[0], "val")

    def val_metric(model) -> float:
        return inputs.selection_value(inputs.targets["val"], val_scores(model))

    def fit(model, lr: float, validate: bool, stop_after: int | None):
        parts = ["train"] if validate else ["train", "val"]
        return train(model, groups(model, lr), data(parts), loss, settings(lr), inputs.reporter,
                     f"  transformer head lr={lr:g} on {'+'.join(parts)}: epochs",
                     validate=val_metric if validate else None, stop_after=stop_after)

    selection = select_lr(cfg.lr, build, fit, cfg.refit, val_scores)
    model, lr, best_epoch, chosen = selection.model, selection.lr, selection.best_epoch, selection.chosen
    test_scores, infer_ms = predict(model, inputs.task, data(["test"]), evaluation)
    test_scores = context.per_sample(test_scores, "test")
    outcome = finish(inputs, selection.candidates, chosen, selection.payloads[chosen], test_scores,
                     {"best_epoch": best_epoch, "tokens": [tokens, dim], "tokens_cached": cached,
                      "backbone_trained": tuned, "init": cfg.init,
                      **({"keep_blocks": cfg.keep_blocks[0]} if cfg.keep_blocks else {})})
    outcome.selected = {"lr": lr, "epochs": best_epoch}

    def scores_of(split: str) -> np.ndarray:  # an extra test set: its tokens computed live, the head unchanged
        images = context.extra_images[split]
        blank = np.zeros((len(images), dataset.num_classes), dtype=np.float32)
        live = LiveTokens(backbone, model) if cached else model
        return predict(live, inputs.task, TrainingImages(images, preprocess, blank), evaluation)[0]

    outcome.predict = scores_of
    head_model = model if cached else model.head
    trainable, head_total = parameter_counts(model if tuned else head_model)
    backbone_params = sum(p.numel() for p in backbone.model.parameters())
    outcome.costs = {"trainable_params": float(trainable),
                     "total_params": float((head_total if tuned else head_total + backbone_params)),
                     "train_seconds": selection.seconds,
                     "infer_ms_per_image": infer_ms + (store.ms_per_image if cached else 0.0),
                     "peak_mem_mb": peak_memory_mb(inputs.device)}
    if cfg.save_model and context.model_folder is not None:
        from radbench.training.saving import save_trained

        trunk = model.trunk if tuned else backbone.model
        description = {**context.description, "selected": outcome.selected, "class_names": list(inputs.class_names),
                       "task": inputs.task.value}
        outcome.details["saved_model"] = str(save_trained(context.model_folder, trunk, head_model, description))
    return outcome


PROTOCOLS.add("transformer_head", ProtocolSpec(
    "transformer_head", TransformerHeadConfig, run_transformer_head,
    "DeiT-style transformer head on the tokens (frozen and cached, or trained with the backbone; DeiT init; "
    "after block k)", inputs="images", variants=one_point_per("keep_blocks", lambda k: f"{k}blocks")))

"""Adapting the backbone end to end: full fine-tuning, LoRA, BitFit and progressive freezing.

Each lr of the grid trains on train with the val metric scored every epoch (early stopping, best weights
kept); the best lr is retrained on train+val for the best epoch count of the same schedule and tested once.
Costs (trainable / total parameters, training time, inference time per image, peak memory) are recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar, Literal

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
from radbench.schema import PositiveFloat
from radbench.training.augment import AugmentConfig, build_augment

if TYPE_CHECKING:
    from radbench.training.loop import TrainSettings
    from radbench.training.models import Classifier


class TrainingConfig(ProtocolConfigBase):
    epochs: int = Field(default=20, ge=1)
    lr: list[PositiveFloat] = Field(default=[1e-5, 1e-4], min_length=1)  # backbone (or adapter) learning rates
    head_lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)  # AdamW; none on biases and norms
    layer_decay: float = Field(default=1.0, gt=0, le=1)  # layer-wise lr decay (ViTs)
    warmup_epochs: float = Field(default=1.0, ge=0)
    batch_size: int = Field(default=32, ge=1)
    grad_clip: float | None = 1.0
    patience: int | None = Field(default=None, ge=1)  # early stopping on the val metric
    augment: AugmentConfig | None = AugmentConfig()  # null: no augmentation
    grad_checkpointing: bool = False
    refit: bool = True  # retrain the chosen lr on train+val for the best epoch count (else keep the val-best model)
    save_model: bool = False  # write the tested model (backbone + head) to OUT/models/..., loadable as `weights:`
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd
    schedule: Literal["cosine", "plateau"] = "cosine"  # after warmup: cosine decay, or lr / 10 at each plateau
    plateau_patience: int = Field(default=2, ge=1)  # epochs without a better val metric before the lr drops
    added_later: ClassVar[tuple[str, ...]] = ("preset", "save_model", "optimizer", "momentum", "schedule",
                                              "plateau_patience")


class FinetuneConfig(TrainingConfig):
    pass


class LoraProtocolConfig(TrainingConfig):
    lr: list[PositiveFloat] = Field(default=[1e-4, 1e-3], min_length=1)
    rank: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = ["qkv"]  # module names in the backbone; e.g. [qkv, fc1, fc2]


class BitfitConfig(TrainingConfig):
    lr: list[PositiveFloat] = Field(default=[1e-4, 1e-3], min_length=1)


class ProgressiveFreezingConfig(TrainingConfig):
    lr: list[PositiveFloat] = Field(default=[1e-4], min_length=1)
    frozen_blocks: list[int] = [0, 4, 8]  # one reported point per value


def settings_for(cfg: TrainingConfig, inputs: ProtocolInput, lr: float) -> TrainSettings:
    from radbench.training.loop import TrainSettings

    context = inputs.images
    return TrainSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay,
        layer_decay=cfg.layer_decay, warmup_epochs=cfg.warmup_epochs, grad_clip=cfg.grad_clip, patience=cfg.patience,
        device=inputs.device, precision=context.precision, num_workers=context.num_workers, seed=inputs.seed,
        optimizer=cfg.optimizer, momentum=cfg.momentum, schedule=cfg.schedule, plateau_patience=cfg.plateau_patience,
    )


def run_trainable(cfg: TrainingConfig, inputs: ProtocolInput, adapt: Callable[[Classifier], None],
                  name: str) -> ProtocolResult:
    import torch

    from radbench.training.loop import ConcatImages, TrainingImages, classification_loss, peak_memory_mb, predict, train
    from radbench.training.models import fresh_classifier, optimizer_groups, parameter_counts
    from radbench.training.select import select_lr

    context = inputs.images
    dataset, preprocess = context.dataset, context.preprocess
    splits = dataset.splits
    augment = build_augment(cfg.augment, preprocess.image_size)

    def build() -> Classifier:
        torch.manual_seed(inputs.seed)  # head and adapter initialisation: the same in every run of this job
        model = fresh_classifier(context.backbone, dataset.num_classes)
        adapt(model)
        if cfg.grad_checkpointing and hasattr(model.trunk, "set_grad_checkpointing"):
            model.trunk.set_grad_checkpointing(True)
        return model

    def plain(split: str):
        return TrainingImages(splits[split].images, preprocess, context.item_targets(inputs.targets[split], split))

    def loss(logits, targets):
        return classification_loss(inputs.task, logits, targets)

    evaluation = settings_for(cfg, inputs, cfg.lr[0])  # predicting reads the batch size and device, not the lr

    def val_scores(model: Classifier):
        return context.per_sample(predict(model, inputs.task, plain("val"), evaluation)[0], "val")

    def val_metric(model: Classifier) -> float:
        return inputs.selection_value(inputs.targets["val"], val_scores(model))

    def fit(model: Classifier, lr: float, validate: bool, stop_after: int | None):
        settings = settings_for(cfg, inputs, lr)
        groups = optimizer_groups(model.trunk, model.head, lr, cfg.head_lr, cfg.weight_decay, cfg.layer_decay)
        parts = ["train"] if validate else ["train", "val"]
        images = ConcatImages(*(splits[p].images for p in parts))
        targets = np.concatenate([context.item_targets(inputs.targets[p], p) for p in parts])
        return train(model, groups, TrainingImages(images, preprocess, targets, augment), loss, settings,
                     inputs.reporter, f"  {name} lr={lr:g} on {'+'.join(parts)}: epochs",
                     validate=val_metric if validate else None, stop_after=stop_after)

    selection = select_lr(cfg.lr, build, fit, cfg.refit, val_scores)
    model, lr, best_epoch = selection.model, selection.lr, selection.best_epoch
    test_scores, infer_ms = predict(model, inputs.task, plain("test"), evaluation)
    test_scores = context.per_sample(test_scores, "test")
    candidates, chosen, seconds = selection.candidates, selection.chosen, selection.seconds
    outcome = finish(inputs, candidates, chosen, selection.payloads[chosen], test_scores,
                     {"best_epoch": best_epoch, "refit": cfg.refit})
    outcome.selected = {"lr": lr, "epochs": best_epoch}
    trainable, total = parameter_counts(model)
    outcome.costs = {"trainable_params": float(trainable), "total_params": float(total), "train_seconds": seconds,
                     "infer_ms_per_image": infer_ms, "peak_mem_mb": peak_memory_mb(inputs.device)}
    outcome.details["trainable_fraction"] = trainable / total

    def scores_of(split: str) -> np.ndarray:  # an extra test set (external, corrupted): the tested model, unchanged
        images = context.extra_images[split]
        blank = np.zeros((len(images), dataset.num_classes), dtype=np.float32)
        return predict(model, inputs.task, TrainingImages(images, preprocess, blank), evaluation)[0]

    outcome.predict = scores_of
    if cfg.save_model and context.model_folder is not None:
        from radbench.training.saving import save_trained

        description = {**context.description, "selected": outcome.selected, "class_names": list(inputs.class_names),
                       "task": inputs.task.value}
        outcome.details["saved_model"] = str(save_trained(context.model_folder, model.trunk, model.head, description))
    return outcome


def run_finetune(cfg: FinetuneConfig, inputs: ProtocolInput) -> ProtocolResult:
    return run_trainable(cfg, inputs, lambda model: None, "finetune")


def run_lora(cfg: LoraProtocolConfig, inputs: ProtocolInput) -> ProtocolResult:
    from radbench.training.models import apply_lora

    return run_trainable(cfg, inputs, lambda m: apply_lora(m, cfg.rank, cfg.alpha, cfg.dropout, cfg.target_modules),
                         "lora")


def run_bitfit(cfg: BitfitConfig, inputs: ProtocolInput) -> ProtocolResult:
    from radbench.training.models import apply_bitfit

    return run_trainable(cfg, inputs, apply_bitfit, "bitfit")


def run_progressive(cfg: ProgressiveFreezingConfig, inputs: ProtocolInput) -> ProtocolResult:
    from radbench.training.models import freeze_first_blocks

    (count,) = cfg.frozen_blocks
    return run_trainable(cfg, inputs, lambda model: freeze_first_blocks(model, count), f"frozen {count}")


PROTOCOLS.add("finetune", ProtocolSpec("finetune", FinetuneConfig, run_finetune,
                                       "full fine-tuning (AdamW, layer decay, warmup+cosine, early stopping)",
                                       inputs="images"))
PROTOCOLS.add("lora", ProtocolSpec("lora", LoraProtocolConfig, run_lora, "LoRA adapters via peft + head",
                                   inputs="images"))
PROTOCOLS.add("bitfit", ProtocolSpec("bitfit", BitfitConfig, run_bitfit, "BitFit: biases + head only",
                                     inputs="images"))
PROTOCOLS.add("progressive_freezing", ProtocolSpec(
    "progressive_freezing", ProgressiveFreezingConfig, run_progressive,
    "fine-tune with the first k blocks frozen, one point per k", inputs="images", variants=one_point_per("frozen_blocks", lambda k: f"frozen{k}")))

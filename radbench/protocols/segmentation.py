"""Segmentation protocol: a decoder (linear or U-Net) on a frozen (or fine-tuned) backbone's dense features.

Each lr of the grid trains on train with val mean Dice scored every epoch (best weights kept); the best is
retrained on train+val for its best epoch count and tested once, per image (2D) or per volume (3D, with
spacing). Frozen taps are cached on disk within `feature_cache_gb`, else recomputed each epoch."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Literal

import numpy as np
from pydantic import Field

from radbench.errors import DataError
from radbench.features.cache import stable_hash
from radbench.metrics.segmentation import mean_over_cases
from radbench.progress import Reporter
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolSpec, one_point_per, small_validation
from radbench.schema import PositiveFloat, PositiveInt, StrictModel

if TYPE_CHECKING:
    import torch

    from radbench.segmentation.decoders import Segmenter
    from radbench.training.loop import TrainSettings


class BackboneTraining(StrictModel):
    train: bool = False  # fine-tune the backbone together with the decoder
    lr: float = Field(default=1e-5, gt=0)
    layer_decay: float = Field(default=1.0, gt=0, le=1)


class SegmentationConfig(ProtocolConfigBase):
    # scratch_unet: MONAI's U-Net; transunet: TransUNet (R50 + ViT-B, cascaded upsampler); neither uses the backbone
    decoder: Literal["linear", "unet", "scratch_unet", "transunet"] = "linear"
    epochs: int = Field(default=30, ge=1)
    lr: list[PositiveFloat] = Field(default=[1e-3, 1e-2], min_length=1)
    batch_size: int = Field(default=16, ge=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    patience: int | None = Field(default=None, ge=1)
    image_size: int | None = Field(default=None, ge=8)  # e.g. 448: position embeddings are interpolated
    taps: int | None = Field(default=None, ge=1)  # feature depths read (linear: 1, unet: 4)
    width: int = Field(default=128, ge=8)  # U-Net decoder channels
    backbone: BackboneTraining = BackboneTraining()
    feature_cache_gb: float = Field(default=4.0, ge=0)
    save_predictions: bool = False  # NIfTI label maps of the test volumes, on the source grid
    overlays: int = Field(default=4, ge=0)  # PNGs of the first test cases: image | truth | prediction
    refit: bool = True
    shots: list[PositiveInt | Literal["all"]] | None = None  # few-shot curve: train on n patients, one point per n
    repeats: int = Field(default=1, ge=1)  # draws of the n patients per seed
    save_model: bool = False  # the backbone (trained or not) and decoder, to OUT/segmentation/.../model/
    encoder_weights: Literal["none", "hub"] = "none"  # transunet: its encoder from scratch, or ImageNet-21k weights
    encoder_kwargs: dict[str, int | float | str] = {}  # transunet: timm kwargs of the encoder (e.g. depth: 6)
    added_later: ClassVar[tuple[str, ...]] = ("preset", "shots", "repeats", "save_model", "encoder_weights",
                                              "encoder_kwargs")


def sample_cases(patient_ids: np.ndarray, shots: int, seed: int, repeat: int) -> np.ndarray:
    """Indices of every image (slice, case) of `shots` training patients drawn at random; reproducible for (seed,
    repeat, shots)."""
    patients = sorted(set(map(str, patient_ids)))
    if shots > len(patients):
        raise DataError(f"few-shot segmentation: {shots} patients asked, the train split has {len(patients)}")
    picked = np.random.default_rng([seed, repeat, shots]).choice(patients, size=shots, replace=False)
    return np.flatnonzero(np.isin(np.asarray(patient_ids).astype(str), picked))


def check_shots(cfg: SegmentationConfig, dataset, seeds: list[int]) -> None:
    numbers = [n for n in cfg.shots or [] if n != "all"]
    if numbers:
        patients = len(set(map(str, dataset.splits["train"].patient_ids)))
        if max(numbers) > patients:
            raise DataError(f"few-shot segmentation: shots up to {max(numbers)} patients, the train split of "
                            f"{dataset.name!r} has {patients}; lower the shots")


@dataclass
class SegmentationInput:
    dataset: object  # SegmentationDataset
    preprocess: object  # Preprocess
    build_backbone: Callable[[int], object]  # image size -> FeatureBackbone
    device: torch.device
    precision: str
    num_workers: int
    seed: int
    reporter: Reporter
    cache_folder: Path
    output_folder: Path
    repeat: int = 0  # the draw of few-shot patients
    description: dict = field(default_factory=dict)  # backbone, dataset, protocol: recorded with a saved model


@dataclass
class SegmentationResult:
    selected: dict
    candidates: list[dict]
    val_metrics: dict
    test_metrics: dict
    sample_metrics: list[dict]
    details: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)


def run_segmentation(cfg: SegmentationConfig, inputs: SegmentationInput) -> SegmentationResult:
    import torch
    from torch.utils.data import ConcatDataset

    from radbench.segmentation.data import SegmentationSamples, cache_taps
    from radbench.segmentation.decoders import DECODERS, Segmenter, dense_taps, dice_ce_loss, tap_indices
    from radbench.segmentation.evaluate import evaluate_split
    from radbench.training.loop import TrainSettings, peak_memory_mb, train
    from radbench.training.models import optimizer_groups, parameter_counts
    from radbench.training.select import select_lr

    dataset = inputs.dataset
    splits, volume, class_names = dataset.splits, dataset.volume, dataset.class_names
    few = {}
    if cfg.shots is not None and cfg.shots[0] != "all":
        chosen = sample_cases(splits["train"].patient_ids, cfg.shots[0], inputs.seed, inputs.repeat)
        splits = {**splits, "train": splits["train"].subset(chosen)}
        few = {"shots": cfg.shots[0], "patients": sorted(set(map(str, splits["train"].patient_ids))),
               "train_cases": len(chosen)}
    preprocess = replace(inputs.preprocess, image_size=cfg.image_size or inputs.preprocess.image_size)
    scratch = cfg.decoder in SCRATCH_DECODERS
    backbone = None if scratch else inputs.build_backbone(preprocess.image_size)
    indices = [] if scratch else tap_indices(backbone.model, cfg.taps or DECODERS[cfg.decoder].taps)
    frozen = not cfg.backbone.train and not scratch
    samples = {name: SegmentationSamples([splits[name]], preprocess, volume) for name in ("train", "val")}
    data = dict(samples)
    if frozen:  # the taps a frozen backbone gives never change: compute them once
        for name, split_samples in samples.items():
            key = stable_hash({"split": name, "ids": list(map(str, splits[name].sample_ids)), "taps": indices,
                               "size": preprocess.identity(), "volume": volume.model_dump() if volume else None})
            cached = cache_taps(split_samples, backbone.model, indices, inputs.cache_folder / f"seg-{key}",
                                cfg.feature_cache_gb, inputs.device, inputs.precision, cfg.batch_size,
                                inputs.reporter, f"{dataset.name}/{name}")
            data[name] = cached or split_samples
    channels = []
    if not scratch:
        with torch.no_grad():
            probe = samples["train"][0][0][None].to(inputs.device)
            channels = [t.shape[1] for t in dense_taps(backbone.model.to(inputs.device).eval(), probe, indices)]

    def build() -> Segmenter:
        torch.manual_seed(inputs.seed)
        if cfg.decoder == "transunet":
            return transunet(dataset.num_classes, preprocess.image_size, cfg)
        if scratch:
            return scratch_unet(dataset.num_classes, cfg.width // 4, preprocess.image_size)
        trunk = backbone.model if frozen else copy.deepcopy(backbone.model)
        decoder = (DECODERS[cfg.decoder](channels, dataset.num_classes, cfg.width) if cfg.decoder == "unet"
                   else DECODERS[cfg.decoder](channels, dataset.num_classes))
        return Segmenter(trunk, decoder, indices, train_backbone=not frozen)

    def settings(lr: float) -> TrainSettings:
        return TrainSettings(cfg.epochs, cfg.batch_size, lr, lr, cfg.weight_decay, cfg.backbone.layer_decay,
                             cfg.warmup_epochs, 1.0, cfg.patience, inputs.device, inputs.precision, inputs.num_workers,
                             inputs.seed)

    def groups(model: Segmenter, lr: float) -> list[dict]:
        if scratch:
            return optimizer_groups(None, model, lr, lr, cfg.weight_decay, 1.0)
        return optimizer_groups(None if frozen else model.trunk, model.decoder, cfg.backbone.lr, lr,
                                cfg.weight_decay, cfg.backbone.layer_decay)

    def evaluate(model, split: str, keep: int = 0, distances: bool = True):
        return evaluate_split(model, splits[split], class_names, preprocess, volume, inputs.device, inputs.precision,
                              cfg.batch_size, keep, distances)

    def val_dice(model) -> float:
        return mean_over_cases(evaluate(model, "val", distances=False)[0])["dice"]

    def fit(model: Segmenter, lr: float, validate: bool, stop_after: int | None):
        parts = ["train"] if validate else ["train", "val"]
        return train(model, groups(model, lr), ConcatDataset([data[p] for p in parts]), dice_ce_loss, settings(lr),
                     inputs.reporter, f"  segmentation {cfg.decoder} lr={lr:g} on {'+'.join(parts)}: epochs",
                     validate=val_dice if validate else None, stop_after=stop_after)

    selection = select_lr(cfg.lr, build, fit, cfg.refit, lambda m: mean_over_cases(evaluate(m, "val")[0]),
                          score=val_dice)
    model, lr, best_epoch = selection.model, selection.lr, selection.best_epoch
    candidates, seconds = selection.candidates, selection.seconds
    for candidate, val_metrics in zip(candidates, selection.payloads):
        candidate["val_metrics"] = val_metrics
    keep = len(splits["test"]) if cfg.save_predictions else cfg.overlays
    start = time.perf_counter()
    cases, kept = evaluate(model, "test", keep)
    infer_seconds = time.perf_counter() - start
    artifacts = _save(cfg, kept, volume, inputs.output_folder)
    images = len(SegmentationSamples([splits["test"]], preprocess, volume.every_slice() if volume else None))
    trainable, total = parameter_counts(model)
    costs = {"trainable_params": float(trainable), "total_params": float(total), "train_seconds": seconds,
             "infer_ms_per_image": 1000 * infer_seconds / max(1, images), "peak_mem_mb": peak_memory_mb(inputs.device)}
    small = small_validation(len(splits["val"]), len(candidates))
    details = {**({"selection_small_val": small} if small else {}),
               **({"refit_fallback": selection.fallback} if selection.fallback else {}),
               "best_epoch": best_epoch, "taps": indices,
               "hd95_unit": "mm" if volume else "px",  # volumes: the scan's spacing; 2D: the mask's own pixels
               "image_size": preprocess.image_size,
               "frozen_backbone": frozen, "feature_cache": [type(d).__name__ for d in data.values()],
               "artifacts": artifacts, **few}
    if cfg.save_model and not scratch:
        from radbench.training.saving import save_trained

        description = {**inputs.description, "selected": {"lr": lr, "epochs": best_epoch},
                       "class_names": list(class_names), "task": "segmentation", "decoder": cfg.decoder}
        details["saved_model"] = str(save_trained(inputs.output_folder / "model", model.trunk, model.decoder,
                                                  description))
    return SegmentationResult({"lr": lr, "epochs": best_epoch}, candidates, selection.payloads[selection.chosen],
                              mean_over_cases(cases), cases, details, costs)


def scratch_unet(classes: int, base: int, image_size: int):
    """The from-scratch baseline the seed studies compare against: MONAI's BasicUNet on the image itself (3
    channels as every backbone sees them), randomly initialised, trained end to end."""
    from monai.networks.nets import BasicUNet

    if image_size % 16:
        raise DataError(f"decoder scratch_unet: image_size {image_size} must be a multiple of 16 (four poolings)")
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=classes,
                     features=(base, base, 2 * base, 4 * base, 8 * base, base))


SCRATCH_DECODERS = {"scratch_unet": "monai.networks.nets.BasicUNet", "transunet": "TransUNet (R50 + ViT, timm)"}


def transunet(classes: int, image_size: int, cfg: SegmentationConfig):
    """TransUNet (radbench/segmentation/transunet.py): its own encoder, from scratch or with ImageNet weights."""
    from radbench.segmentation.transunet import TransUNet

    if image_size % 16:
        raise DataError(f"decoder transunet: image_size {image_size} must be a multiple of 16 (its ViT reads 1/16 "
                        "of the image per token)")
    try:
        return TransUNet(classes, image_size, pretrained=cfg.encoder_weights == "hub", **cfg.encoder_kwargs)
    except TypeError as error:
        raise DataError(f"decoder transunet: encoder_kwargs {cfg.encoder_kwargs}: {error}") from None


def _save(cfg: SegmentationConfig, kept: list[tuple], volume, folder: Path) -> list[str]:
    from radbench.segmentation.evaluate import overlay_slice, save_nifti, save_overlay

    paths = []
    for index, (sample_id, prediction, target, source, image) in enumerate(kept):
        if index < cfg.overlays:
            if source is not None:
                image, target_slice, prediction_slice = overlay_slice(source, target, prediction, volume.axis)
            else:
                target_slice, prediction_slice = target, prediction
            path = folder / "overlays" / f"{sample_id}.png"
            save_overlay(image, target_slice, prediction_slice, path)
            paths.append(str(path))
        if cfg.save_predictions and source is not None:
            path = folder / "predictions" / f"{sample_id}.nii.gz"
            save_nifti(prediction, source, path)
            paths.append(str(path))
    return paths


PROTOCOLS.add("segmentation", ProtocolSpec(
    "segmentation", SegmentationConfig, run_segmentation,
    "linear or U-Net decoder on dense features (frozen or fine-tuned), Dice/IoU/HD95; few-shot curves",
    inputs="segmentation", record_task="segmentation", headline="dice",
    variants=one_point_per("shots", lambda n: "all" if n == "all" else f"{n}shot"),
    repeats=lambda cfg: cfg.repeats if cfg.shots and cfg.shots[0] != "all" else 1, check=check_shots))

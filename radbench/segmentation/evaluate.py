"""Inference and scoring per case: a 2D image at its native mask size, or a volume slice by slice re-stacked
into its canonical geometry and scored in 3D with its spacing; predictions saved as NIfTI on the source grid,
and overlay PNGs (image | ground truth | prediction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from radbench.data.segmentation import SegSplit
from radbench.data.transforms import Preprocess
from radbench.data.volumes import VolumeConfig, oriented_stack, slice_images, unorient_stack
from radbench.device import autocast
from radbench.metrics.segmentation import case_metrics


@torch.no_grad()
def predict_slices(model, images: list[np.ndarray], shape: tuple[int, int], preprocess: Preprocess,
                   device: torch.device, precision: str, batch_size: int) -> np.ndarray:
    """Label maps (K, H, W) for a list of images of one size."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([preprocess(image) for image in images[start:start + batch_size]]).to(device)
        with autocast(device, precision):
            logits = model(batch)
        logits = preprocess.unfit(logits.float(), shape)
        out.append(logits.permute(0, 2, 3, 1).contiguous().argmax(-1).cpu().numpy())  # class-last argmax is fast
    return np.concatenate(out)


def predict_case(model, split: SegSplit, case: int, preprocess: Preprocess, volume: VolumeConfig | None,
                 device: torch.device, precision: str, batch_size: int):
    """(prediction, target, spacing, source volume or None, display image) of one image or volume."""
    model.eval()
    if volume is None:
        image, target = split.images.load(case), split.masks.load(case)
        prediction = predict_slices(model, [image], target.shape, preprocess, device, precision, batch_size)[0]
        return prediction, target, None, None, image
    source = split.images.load_volume(case)
    target = split.masks.load_volume(case).array.astype(np.int64)
    slices = slice_images(source, volume.every_slice())
    shape = oriented_stack(target, volume.axis).shape[1:]
    stack = predict_slices(model, slices, shape, preprocess, device, precision, batch_size)
    prediction = np.ascontiguousarray(unorient_stack(stack, volume.axis))
    return prediction, target, source.spacing, source, None


def evaluate_split(model, split: SegSplit, class_names: tuple[str, ...], preprocess: Preprocess,
                   volume: VolumeConfig | None, device, precision: str, batch_size: int,
                   keep: int = 0, distances: bool = True) -> tuple[list[dict], list[tuple]]:
    """Per-case metrics, and the first `keep` cases' (id, prediction, target, source, image) for saving."""
    cases, kept = [], []
    for case in range(len(split)):
        prediction, target, spacing, source, image = predict_case(model, split, case, preprocess, volume, device,
                                                                  precision, batch_size)
        metrics = case_metrics(prediction, target, class_names, spacing, distances)
        cases.append({"sample_id": str(split.sample_ids[case]), **metrics})
        if case < keep:
            kept.append((str(split.sample_ids[case]), prediction, target, source, image))
    return cases, kept


def save_nifti(prediction: np.ndarray, source, path: Path) -> None:
    """A canonical label volume written on the source file's grid: same shape and affine as the input."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.to_source(prediction.astype(np.uint8))
    nib.save(nib.Nifti1Image(data, source.affine), str(path))


def _gray(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image.mean(axis=2)
    if image.max() > 1.0:
        image = image / 255.0
    return np.clip(image * 255, 0, 255).astype(np.uint8)


PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.float32)


def _blend(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    colours = PALETTE[np.clip(labels, 0, None) % len(PALETTE)]
    mask = labels > 0
    rgb[mask] = 0.5 * rgb[mask] + 0.5 * colours[mask]
    return rgb.astype(np.uint8)


def save_overlay(image: np.ndarray, target: np.ndarray, prediction: np.ndarray, path: Path) -> None:
    """image | ground truth | prediction, side by side (the image brought to the mask's size)."""
    gray = _gray(image)
    if gray.shape != target.shape:
        gray = np.asarray(Image.fromarray(gray).resize(target.shape[::-1], Image.BILINEAR))
    panels = [np.repeat(gray[..., None], 3, axis=2), _blend(gray, target), _blend(gray, prediction)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def overlay_slice(source, target: np.ndarray, prediction: np.ndarray, axis: str):
    """The slice with the most ground-truth foreground, for a volume's overlay."""
    stacks = [oriented_stack(a, axis) for a in (source.array, target, prediction)]
    k = int(np.argmax((stacks[1] > 0).reshape(len(stacks[1]), -1).sum(1)))
    return stacks[0][k], stacks[1][k], stacks[2][k]

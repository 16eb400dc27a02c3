"""Segmentation metrics per image (2D) or per volume (3D): Dice, IoU and HD95 (in mm with the voxel spacing).

Semantics follow MONAI's (`compute_dice`, `compute_iou`, `compute_hausdorff_distance` with percentile 95,
background excluded): a class absent from the ground truth gives NaN for that case (left out of the mean,
as MONAI's ignore_empty); HD95 is the larger of the two directed 95th-percentile distances between the
surfaces (mask XOR its binary erosion). A class present in the ground truth but never predicted has Dice 0
and, since no surface distance exists, HD95 equal to the image's diagonal in mm (the worst possible)."""

from __future__ import annotations

import numpy as np


def pixel_counts(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Per class 1..C-1: (overlap, target pixels, predicted pixels); target pixels labelled -1 (ignore) left out."""
    pred, true = prediction.ravel().astype(np.int64), target.ravel().astype(np.int64)
    valid = true >= 0
    pred, true = pred[valid], true[valid]
    joint = np.bincount(true * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    return (np.diag(joint)[1:].astype(np.float64), joint.sum(1)[1:].astype(np.float64),
            joint.sum(0)[1:].astype(np.float64))


def dice_iou(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU (classes 1..C-1), NaN where the class is absent from the target; target pixels
    labelled -1 (ignore) are left out."""
    overlap, true_sum, pred_sum = pixel_counts(prediction, target, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(true_sum > 0, 2 * overlap / (true_sum + pred_sum), np.nan)
        iou = np.where(true_sum > 0, overlap / (true_sum + pred_sum - overlap), np.nan)
    return dice, iou


def _bounds(mask: np.ndarray) -> tuple[list[int], list[int]]:
    where = np.nonzero(mask)
    return [int(w.min()) for w in where], [int(w.max()) for w in where]


def _edges(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask ^ ndimage.binary_erosion(mask)


def _directed(edges_from: np.ndarray, edges_to: np.ndarray, spacing) -> np.ndarray:
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(~edges_to, sampling=spacing)
    return distance[edges_from]


def hd95(prediction: np.ndarray, target: np.ndarray, num_classes: int, spacing=None) -> np.ndarray:
    """Per-class 95th-percentile symmetric Hausdorff distance (classes 1..C-1), in mm when `spacing` is given."""
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * prediction.ndim
    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(prediction.shape, spacing))))
    out = np.full(num_classes - 1, np.nan)
    ignored = target < 0
    for c in range(1, num_classes):
        true, pred = target == c, (prediction == c) & ~ignored
        if not true.any():
            continue
        if not pred.any():
            out[c - 1] = diagonal
            continue
        # both surfaces lie in the box around pred | true: distances computed inside it (with a 1-voxel margin,
        # as MONAI crops) are exact, and the distance transform costs the box, not the whole volume
        box = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(*_bounds(pred | true)))
        pred, true = np.pad(pred[box], 1), np.pad(true[box], 1)
        edges_pred, edges_true = _edges(pred), _edges(true)
        forward = _directed(edges_pred, edges_true, spacing)
        backward = _directed(edges_true, edges_pred, spacing)
        out[c - 1] = max(np.percentile(forward, 95), np.percentile(backward, 95))
    return out


def case_metrics(prediction: np.ndarray, target: np.ndarray, class_names: tuple[str, ...], spacing=None,
                 distances: bool = True) -> dict:
    """Metrics of one image or volume: dice/<class>, iou/<class>, hd95/<class> and their means over classes,
    dice_jaccard_mean (the mean of the two, as Montgomery's results are often given), and the pixel counts that
    pool Dice over a whole split (pixels_overlap / pixels_target / pixels_predicted per class: mean_over_cases)
    (`distances=False` skips HD95, e.g. for per-epoch validation where only Dice selects)."""
    num_classes = len(class_names)
    dice, iou = dice_iou(prediction, target, num_classes)
    overlap, true_sum, pred_sum = pixel_counts(prediction, target, num_classes)
    named = [("dice", dice), ("iou", iou)]
    if distances:
        named.append(("hd95", hd95(prediction, target, num_classes, spacing)))
    out = {}
    for name, values in named:
        for class_name, value in zip(class_names[1:], values):
            out[f"{name}/{class_name}"] = float(value)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["dice_jaccard_mean"] = (out["dice"] + out["iou"]) / 2
    for class_name, both, truth, predicted in zip(class_names[1:], overlap, true_sum, pred_sum):
        out[f"pixels_overlap/{class_name}"] = float(both)
        out[f"pixels_target/{class_name}"], out[f"pixels_predicted/{class_name}"] = float(truth), float(predicted)
    return out


def mean_over_cases(cases: list[dict]) -> dict:
    """Average each metric over the cases where it is defined (non-numeric entries such as ids are skipped), and
    dice_pooled: Dice over every pixel of the split at once (summed overlaps over summed sizes, per class, then the
    mean over classes present: the seed reference code's way, which weighs large masks more)."""
    keys = sorted({k for case in cases for k, v in case.items() if not isinstance(v, str)})
    out = {}
    for key in keys:
        if key.startswith("pixels_"):
            continue
        values = np.array([case.get(key, np.nan) for case in cases], dtype=np.float64)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    classes = sorted({k.split("/", 1)[1] for k in keys if k.startswith("pixels_target/")})
    pooled = []
    for name in classes:
        both, truth, predicted = (sum(case.get(f"pixels_{part}/{name}", 0.0) for case in cases)
                                  for part in ("overlap", "target", "predicted"))
        if truth > 0:  # a class absent from the whole split has no Dice (as per case)
            pooled.append(2 * both / (truth + predicted))
    if classes:
        out["dice_pooled"] = float(np.mean(pooled)) if pooled else float("nan")
    out["cases"] = float(len(cases))
    return out

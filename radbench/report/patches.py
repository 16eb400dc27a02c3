"""PCA maps of patch features (DINOv2 paper, Fig. 1): the first three principal components of each backbone's
patch tokens on a few test images, fitted on those images together, shown as RGB; patches whose first component
falls below zero are background and drawn dark.

Only these few images pass through each backbone (on the CPU, no training); the backbone and the images are
rebuilt from the configuration stored with the study's jobs."""

from __future__ import annotations

import json
import math

import numpy as np

from radbench.report.api import Results
from radbench.report.figures import _pyplot


def pca_rgb(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images, h, w, D) patch tokens -> ((images, h, w, 3) RGB in [0, 1], (images, h, w) foreground mask).
    The first component's sign is chosen so that the border patches are mostly background."""
    n, h, w, d = tokens.shape
    flat = tokens.reshape(-1, d).astype(np.float64)
    flat = flat - flat.mean(0)
    _, _, components = np.linalg.svd(flat, full_matrices=False)
    projected = flat @ components[:3].T
    if projected.shape[1] < 3:
        projected = np.pad(projected, ((0, 0), (0, 3 - projected.shape[1])))
    first = projected[:, 0].reshape(n, h, w)
    border = np.concatenate([first[:, 0], first[:, -1], first[:, :, 0], first[:, :, -1]], axis=None)
    if np.mean(border > 0) > 0.5:
        projected[:, 0] *= -1
        first = -first
    low, high = projected.min(0), projected.max(0)
    rgb = (projected - low) / np.where(high > low, high - low, 1.0)
    return rgb.reshape(n, h, w, 3), first > 0


def _test_images(config: dict, count: int):
    """The first `count` test images of the dataset as the study read them, or None (3D, unreadable config)."""
    from radbench.report.failure_images import study_dataset

    loaded = study_dataset(config)
    if loaded is None:
        return None
    split = loaded.splits["test"]
    return [split.images.load(i) for i in range(min(count, len(split.sample_ids)))]


def _patch_tokens(config: dict, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(images, h, w, D) patch tokens of one backbone, and the images as the backbone saw them (for display)."""
    import torch

    from radbench.backbones import build_backbone
    from radbench.backbones.base import BackboneConfig
    from radbench.data.transforms import Preprocess
    from radbench.features.tokens import frozen_tokens

    fields = {k: v for k, v in config["backbone"].items() if k in BackboneConfig.model_fields}
    preprocess = Preprocess.from_identity(config["preprocess"])
    backbone = build_backbone(BackboneConfig(**fields), preprocess.image_size)
    batch = torch.stack([preprocess(image) for image in images])
    backbone.model.eval()
    with torch.no_grad():
        tokens = frozen_tokens(backbone, batch).float().numpy()
    side = math.isqrt(tokens.shape[1])  # prefix tokens (CLS, registers) come first: drop them
    tokens = tokens[:, tokens.shape[1] - side * side:]
    shown = torch.stack([preprocess.fit_unit(image) for image in images]).numpy()
    return tokens.reshape(len(images), side, side, -1), shown


def patch_maps(results: Results, dataset: str, count: int, warn=print):
    """A figure: the test images (top row) and each backbone's PCA map under them; None when nothing to show."""
    jobs = results.store.jobs().query("dataset == @dataset").drop_duplicates("backbone").sort_values("backbone")
    if jobs.empty:
        return None
    try:
        images = _test_images(json.loads(jobs.config.iloc[0]), count)
    except Exception as error:  # the data moved since the run: the rest of the report still renders
        warn(f"PCA patch maps of {dataset} skipped: its test images cannot be read ({type(error).__name__}: {error})")
        return None
    if not images:
        return None
    maps, shown = {}, None
    for job in jobs.itertuples():
        try:
            tokens, seen = _patch_tokens(json.loads(job.config), images)
        except Exception as error:  # e.g. hub weights unavailable offline: the rest of the report still renders
            warn(f"PCA patch maps: {job.backbone} on {dataset} skipped ({type(error).__name__}: {error})")
            continue
        maps[job.backbone] = pca_rgb(tokens)
        shown = seen if shown is None else shown
    if not maps:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(len(maps) + 1, len(images), figsize=(1.8 * len(images) + 1, 1.8 * (len(maps) + 1)),
                                squeeze=False)
    for column in range(len(images)):
        axes[0][column].imshow(shown[column].transpose(1, 2, 0).mean(-1), cmap="gray")
        for row, (backbone, (rgb, foreground)) in enumerate(maps.items(), start=1):
            axes[row][column].imshow(rgb[column] * np.where(foreground[column], 1.0, 0.25)[..., None],
                                     interpolation="nearest")
            if column == 0:
                axes[row][column].set_ylabel(backbone, fontsize="small")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][0].set_ylabel("image", fontsize="small")
    figure.suptitle(f"{dataset}: PCA of patch features", fontsize="medium")
    figure.tight_layout()
    return figure

"""2D segmentation layouts: an image folder + a mask folder with matching names (`mask_folder`, e.g. the
Shenzhen lung masks), and the Montgomery County set (CXR_png + ManualMask/leftMask, rightMask)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from radbench.data.base import DatasetConfigBase, FileImages, file_fingerprint
from radbench.data.readers import IMAGE_EXTENSIONS
from radbench.data.registry import ADAPTERS, Adapter
from radbench.data.segmentation import MaskFiles, SegmentationDataset, SegSplit, UnionMasks, assemble_segmentation
from radbench.errors import DataError


class MaskFolderConfig(DatasetConfigBase):
    adapter: Literal["mask_folder"]
    images: str = "images"  # folder of images, relative to `path`
    masks: str = "masks"  # folder of masks, relative to `path`
    mask_suffix: str = ""  # CHNCXR_0001_0.png <-> CHNCXR_0001_0_mask.png with mask_suffix: _mask
    mask_threshold: int | None = None  # binarise anti-aliased masks: value > threshold is class 1
    mask_values: dict[int, int] | None = None  # stored value -> class, e.g. {0: 0, 255: 1}
    mask_ignore: int | None = None  # stored value to leave out of the loss and the metrics (e.g. 254)
    patient_regex: str | None = None  # group 1 of a match on the image file name is the patient id


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from None


def check_same_size(image: Path, masks: tuple[Path, ...]) -> None:
    expected = image_size(image)
    for mask in masks:
        if image_size(mask) != expected:
            raise DataError(f"{mask}: mask size {image_size(mask)} differs from its image {image.name} {expected}")


def _patients(paths: list[Path], pattern: str | None) -> np.ndarray:
    if pattern is None:
        return np.array([p.stem for p in paths])
    compiled = re.compile(pattern)
    out = []
    for path in paths:
        match = compiled.search(path.name)
        if match is None:
            raise DataError(f"{path}: file name does not match patient_regex {pattern!r}")
        out.append(match.group(1) if compiled.groups else match.group(0))
    return np.array(out)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise DataError(f"{folder}: no images")
    return images


def load_mask_folder(cfg: MaskFolderConfig) -> SegmentationDataset:
    images = _images_in(cfg.path / cfg.images)
    mask_dir = cfg.path / cfg.masks
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder not found")
    masks = []
    for image in images:
        candidates = [mask_dir / f"{image.stem}{cfg.mask_suffix}{suffix}" for suffix in (image.suffix, ".png", ".tif")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{image}: no mask {candidates[0].name} in {mask_dir}")
        check_same_size(image, (found,))
        masks.append(found)
    class_names = tuple(cfg.class_names or ("background", "foreground"))
    source = MaskFiles(tuple(masks), cfg.mask_threshold, cfg.mask_values, len(class_names), cfg.mask_ignore)
    ids = np.array([p.stem for p in images])
    whole = SegSplit("all", ids, _patients(images, cfg.patient_regex), FileImages(tuple(images), cfg.intensity), source)
    fingerprint = file_fingerprint([*images, *masks], extra=f"{cfg.mask_threshold}{cfg.mask_values}{cfg.mask_ignore}")
    return assemble_segmentation(cfg, class_names, {"all": whole}, fingerprint, "generated")


class MontgomeryConfig(DatasetConfigBase):
    """`path`: the MontgomerySet folder (CXR_png/, ManualMask/leftMask/, ManualMask/rightMask/)."""

    adapter: Literal["montgomery"]
    lungs: Literal["combined", "separate"] = "combined"  # one lung class, or left = 1 and right = 2


def load_montgomery(cfg: MontgomeryConfig) -> SegmentationDataset:
    images = _images_in(cfg.path / "CXR_png")
    groups = []
    for image in images:
        pair = tuple(cfg.path / "ManualMask" / side / image.name for side in ("leftMask", "rightMask"))
        missing = [p for p in pair if not p.is_file()]
        if missing:
            raise DataError(f"{image}: no mask {missing[0]}")
        check_same_size(image, pair)
        groups.append(pair)
    names = ("background", "left lung", "right lung") if cfg.lungs == "separate" else ("background", "lung")
    ids = np.array([p.stem for p in images])
    split = SegSplit("all", ids, ids.copy(), FileImages(tuple(images), cfg.intensity),
                     UnionMasks(tuple(groups), separate=cfg.lungs == "separate"))
    fingerprint = file_fingerprint([*images, *(p for g in groups for p in g)], extra=cfg.lungs)
    return assemble_segmentation(cfg, tuple(cfg.class_names or names), {"all": split}, fingerprint, "generated")


ADAPTERS.add("mask_folder", Adapter("mask_folder", MaskFolderConfig, load_mask_folder,
                                    "segmentation: image folder + mask folder with matching names", "segmentation"))
ADAPTERS.add("montgomery", Adapter("montgomery", MontgomeryConfig, load_montgomery,
                                   "segmentation: Montgomery CXR_png + ManualMask/left,rightMask", "segmentation"))

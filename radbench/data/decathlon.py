"""Medical Segmentation Decathlon layout: dataset.json (`labels`, `training` image/label pairs), imagesTr/,
labelsTr/; without dataset.json, imagesTr/ and labelsTr/ with equal file names and `class_names` given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from radbench.data.base import DatasetConfigBase, file_fingerprint
from radbench.data.readers.volume import volume_shape
from radbench.data.registry import ADAPTERS, Adapter
from radbench.data.segmentation import LabelVolumes, SegmentationDataset, SegSplit, assemble_segmentation
from radbench.data.volumes import FileVolumes, VolumeConfig
from radbench.errors import DataError


class DecathlonConfig(DatasetConfigBase):
    adapter: Literal["decathlon"]
    channel: int | None = None  # modality of 4D images (e.g. 0 = FLAIR in MSD BraTS)
    mask_values: dict[int, int] | None = None  # stored label -> class, e.g. merge tumour sub-labels
    patient_regex: str | None = None  # default: each case is its own patient


def _pairs(cfg: DecathlonConfig) -> tuple[list[tuple[Path, Path]], tuple[str, ...]]:
    manifest = cfg.path / "dataset.json"
    if manifest.is_file():
        try:
            description = json.loads(manifest.read_text())
            labels = {int(k): v for k, v in description["labels"].items()}
            training = description["training"]
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as error:
            raise DataError(f"{manifest}: not a Decathlon dataset.json ({type(error).__name__}: {error})") from None
        if sorted(labels) != list(range(len(labels))):
            raise DataError(f"{manifest}: labels must be numbered 0..N-1, got {sorted(labels)}")
        pairs = [(cfg.path / item["image"], cfg.path / item["label"]) for item in training]
        names = tuple(cfg.class_names or [labels[i] for i in range(len(labels))])
        return pairs, names
    if cfg.class_names is None:
        raise DataError(f"{cfg.path}: no dataset.json; give `class_names` (background first)")
    images = sorted((cfg.path / "imagesTr").glob("*.nii*"))
    if not images:
        raise DataError(f"{cfg.path}: no dataset.json and no imagesTr/*.nii(.gz)")
    return [(image, cfg.path / "labelsTr" / image.name) for image in images], tuple(cfg.class_names)


def load_decathlon(cfg: DecathlonConfig) -> SegmentationDataset:
    pairs, class_names = _pairs(cfg)
    for image, label in pairs:
        for path in (image, label):
            if not path.exists():
                raise DataError(f"{path}: listed in the dataset but not found")
        image_shape, label_shape = volume_shape(image), volume_shape(label)
        if image_shape[:3] != label_shape[:3]:
            raise DataError(f"{label}: label grid {label_shape[:3]} differs from its image {image.name} {image_shape[:3]}")
    ids = np.array([image.name.split(".")[0] for image, _ in pairs])
    patients = ids.copy()
    if cfg.patient_regex:
        import re

        pattern = re.compile(cfg.patient_regex)
        patients = np.array([(pattern.search(i) or [i, i])[1 if pattern.groups else 0] for i in ids])
    volume = cfg.volume or VolumeConfig()
    images = FileVolumes(tuple(i for i, _ in pairs), cfg.intensity, volume.spacing, cfg.channel)
    labels = LabelVolumes(tuple(label for _, label in pairs), len(class_names), cfg.mask_values)
    whole = SegSplit("all", ids, patients, images, labels)
    fingerprint = file_fingerprint([p for pair in pairs for p in pair], extra=f"{cfg.channel}{class_names}{cfg.mask_values}")
    return assemble_segmentation(cfg, class_names, {"all": whole}, fingerprint, "generated", volume)


ADAPTERS.add("decathlon", Adapter("decathlon", DecathlonConfig, load_decathlon,
                                  "segmentation: Decathlon dataset.json + imagesTr/labelsTr (NIfTI volumes)", "segmentation"))

"""The pretraining YAML (`radbench pretrain pretrain.yaml`): pydantic models, validated in full before any work.

Defaults are DINO's (facebookresearch/dino main_dino.py) unless a comment says otherwise; `lr` is DINO-CXR's."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from radbench.backbones import BackboneConfig, resolve_entry
from radbench.config import _dataset, _expand_variables, _validate
from radbench.data.base import DatasetConfigBase
from radbench.errors import ConfigError, RadbenchError
from radbench.schema import InputPath, OutputPath, PositiveFloat, StrictModel
from radbench.yaml_file import load_yaml_file

Range = tuple[float, float]


class OptimizerConfig(StrictModel):
    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = 1.25e-4  # peak, after warmup (DINO-CXR; DINO: 5e-4 x batch / 256)
    min_lr: float = Field(default=1e-6, ge=0)  # end of the cosine decay
    warmup_epochs: float = Field(default=10, ge=0)  # linear warmup (fractions allowed for short runs)
    weight_decay: Range = (0.04, 0.4)  # cosine schedule start -> end; not applied to biases and norms
    clip_grad: float | None = Field(default=3.0, gt=0)  # per-parameter gradient norm clip (DINO); null: off


class HeadConfig(StrictModel):
    """The DINO projection head: 3-layer MLP, l2-normalised bottleneck, weight-normalised prototypes."""

    output_dim: int = Field(default=65536, ge=2)  # prototypes K
    hidden_dim: int = Field(default=2048, ge=1)
    bottleneck_dim: int = Field(default=256, ge=1)
    norm_last_layer: bool = True


class IbotConfig(StrictModel):
    """dinov2 only: masked-patch self-distillation (iBOT) with DINOv2's block masking."""

    weight: float = Field(default=1.0, ge=0)
    mask_probability: float = Field(default=0.5, ge=0, le=1)  # share of images in a batch that get masks
    mask_ratio: Range = (0.1, 0.5)  # of the patches of a masked image


class AugmentConfig(StrictModel):
    """Radiograph-appropriate views: no colour jitter, grayscale or solarisation; intensity and gamma jitter,
    blur, flips, small rotations."""

    modality: Literal["xray"] = "xray"
    horizontal_flip: float = Field(default=0.5, ge=0, le=1)
    rotation_degrees: float = Field(default=10.0, ge=0, le=180)
    brightness: float = Field(default=0.2, ge=0, le=1)  # multiplicative intensity jitter, +-
    contrast: float = Field(default=0.2, ge=0, le=1)
    gamma: Range = (0.8, 1.25)  # uniform in log space
    intensity_probability: float = Field(default=0.8, ge=0, le=1)
    # Gaussian blur probability per view, as DINO: first global view, second, every other view
    blur: tuple[float, float, float] = (1.0, 0.1, 0.5)

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, value: Range) -> Range:
        if not 0 < value[0] <= value[1]:
            raise ValueError("gamma is (low, high) with 0 < low <= high")
        return value


class EvaluateConfig(StrictModel):
    study: InputPath  # a study YAML; its backbones are replaced by each saved teacher
    initial: bool = True  # also evaluate the starting weights (step 0 of the curve)


class PretrainConfig(StrictModel):
    name: str
    output_dir: OutputPath
    cache_dir: OutputPath | None = None  # preprocessing cache; default <output_dir>/cache
    backbone: BackboneConfig
    data: list[Any] = Field(min_length=1)  # dataset entries, validated by their adapters (see _parse)
    # which splits of labelled datasets are pretrained on; an unlabelled folder is read whole. The test split
    # is left out by default: pretraining on the images a study tests on would leak them.
    splits: list[Literal["train", "val", "test"]] = ["train"]
    method: Literal["dino", "dinov2"] = "dino"
    views: Literal["fixed", "multicrop"] = "fixed"
    image_size: int = Field(default=224, ge=8)  # global views (and the stored images' size)
    global_views: int = Field(default=2, ge=1)  # fixed: all views are global views of image_size
    global_scale: Range = (0.4, 1.0)  # RandomResizedCrop area range of global views
    local_views: int = Field(default=8, ge=0)  # multicrop only
    local_size: int = Field(default=96, ge=8)
    local_scale: Range = (0.05, 0.4)
    resize: Literal["resize", "pad"] = "resize"  # how images are fitted to image_size before cropping
    epochs: int = Field(default=100, ge=1)
    max_steps: int | None = Field(default=None, ge=1)  # stop early (schedules still span `epochs`)
    batch_size: int = Field(default=64, ge=2)  # global batch (all processes together)
    optimizer: OptimizerConfig = OptimizerConfig()
    teacher_momentum: Range = (0.996, 1.0)  # cosine schedule start -> end
    teacher_temp: float = Field(default=0.04, gt=0)
    warmup_teacher_temp: float = Field(default=0.04, gt=0)
    warmup_teacher_temp_epochs: float = Field(default=0, ge=0)
    student_temp: float = Field(default=0.1, gt=0)
    center_momentum: float = Field(default=0.9, ge=0, lt=1)
    centering: Literal["auto", "center", "sinkhorn"] = "auto"  # auto: center for dino, Sinkhorn-Knopp for dinov2
    head: HeadConfig = HeadConfig()
    freeze_last_layer_epochs: float = Field(default=1, ge=0)
    ibot: IbotConfig = IbotConfig()
    koleo_weight: float = Field(default=0.1, ge=0)  # dinov2 only (DINOv2's default)
    augment: AugmentConfig = AugmentConfig()
    checkpoint_every: int = Field(default=1000, ge=1)  # steps between saved teachers (and resumable states)
    evaluate: EvaluateConfig | None = None
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    num_workers: int | None = Field(default=None, ge=0)
    preprocess_dtype: Literal["uint8", "uint16"] = "uint8"

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _scale(cls, value: Range) -> Range:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError("a crop scale is (low, high) with 0 < low <= high <= 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "PretrainConfig":
        if self.views == "fixed" and self.global_views < 2:
            raise ValueError("views: fixed needs global_views >= 2 (the loss compares different views)")
        if self.views == "multicrop" and self.global_views != 2:
            raise ValueError("views: multicrop uses 2 global views (DINO); set global_views: 2")
        if self.views == "multicrop" and self.local_views < 1:
            raise ValueError("views: multicrop needs local_views >= 1 (or use views: fixed)")
        if self.teacher_momentum[0] > self.teacher_momentum[1] or not 0 <= self.teacher_momentum[0] <= 1 \
                or self.teacher_momentum[1] > 1:
            raise ValueError("teacher_momentum is (start, end) with 0 <= start <= end <= 1")
        return self

    @property
    def sinkhorn(self) -> bool:
        return self.centering == "sinkhorn" or (self.centering == "auto" and self.method == "dinov2")

    @property
    def cache_root(self) -> Path:
        return self.cache_dir or self.output_dir / "cache"

    def n_views(self) -> tuple[int, int]:
        """(global, local) views per image."""
        return (self.global_views, self.local_views if self.views == "multicrop" else 0)

    def training_identity(self) -> dict:
        """What a resumable state depends on: everything but bookkeeping (where to write, how often to evaluate,
        devices and workers); a state written under another identity is not resumed."""
        return self.model_dump(mode="json", exclude={"output_dir", "cache_dir", "evaluate", "device", "num_workers",
                                                     "max_steps", "checkpoint_every", "name"})


class ParsedPretrain:
    """The validated config and its dataset entries (each validated by its adapter's own model)."""

    def __init__(self, config: PretrainConfig, datasets: list[DatasetConfigBase], source: str):
        self.config, self.datasets, self.source = config, datasets, source


def load_pretrain(path: str | Path, updates: dict | None = None) -> ParsedPretrain:
    """The config file, with `updates` (top-level keys from the command line) replacing its values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pretraining config not found")
    raw = load_yaml_file(path, "pretraining config")
    errors: list[str] = []
    raw = _expand_variables(raw, "", errors)
    if not isinstance(raw, dict):
        errors.append("the config must be a mapping of keys (name, output_dir, backbone, data, ...)")
    if errors:
        raise ConfigError("\n".join(f"{path}: {e}" for e in errors))
    for key, value in (updates or {}).items():
        if key == "backbone" and isinstance(raw.get("backbone"), dict):  # another model keeps only mean / std
            kept = raw["backbone"] if "name" not in value else {k: v for k, v in raw["backbone"].items()
                                                                 if k in ("mean", "std")}
            value = {**kept, **value}
        raw[key] = value
    return parse_pretrain(raw, path.resolve().parent, str(path))


def parse_pretrain(raw: dict, base_dir: Path, source: str = "pretrain") -> ParsedPretrain:
    context = {"base_dir": base_dir}
    errors: list[str] = []
    config = _validate(PretrainConfig, raw, "", context, errors)
    datasets = []
    for i, item in enumerate(raw.get("data") or []):
        if isinstance(item, dict) and "name" not in item:  # names only matter for messages here
            item = {**item, "name": f"{item.get('adapter', 'data')}{i}"}
        datasets.append(_dataset(item, f"data[{i}]", context, errors))
    if config is not None and not errors:
        try:
            resolve_entry(config.backbone.name)
        except RadbenchError as error:
            errors.append(f"backbone.name: {error}")
    if errors:
        raise ConfigError("\n".join(f"{source}: {e}" for e in errors))
    return ParsedPretrain(config, datasets, source)

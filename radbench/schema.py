"""Building blocks for config models: strict pydantic base, path resolution, feature-type names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

FEATURE_TYPE_PATTERN = re.compile(r"^(cls|mean|cls\+mean|pool|embed|last(\d+)(\+mean)?|block\d+)$")
METRIC_NAMES = ("auroc", "accuracy", "balanced_accuracy", "recall", "f1_macro", "label_accuracy", "kappa", "dice",
                "iou")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a study YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(value: Path | str, info: ValidationInfo, *, must_exist: bool = True) -> Path:
    """Resolve a path against the study file's folder (context `base_dir`) and check it exists."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    path = path.resolve()
    if must_exist and not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


def _input_path(value: Path, info: ValidationInfo) -> Path:
    return resolve_path(value, info)


def _output_path(value: Path, info: ValidationInfo) -> Path:
    return resolve_path(value, info, must_exist=False)


InputPath = Annotated[Path, AfterValidator(_input_path)]  # must exist; relative to the study file
OutputPath = Annotated[Path, AfterValidator(_output_path)]


def canonical_feature_type(name: str) -> str:
    """Validate a feature-type name and map aliases (last1 == cls) to one spelling."""
    name = name.strip().lower().replace(" ", "")
    match = FEATURE_TYPE_PATTERN.match(name)
    if not match:
        raise ValueError(
            f"unknown feature type {name!r}; use cls, mean, cls+mean, pool, embed, lastN, lastN+mean or blockN"
        )
    if match.group(2) is not None:
        n = int(match.group(2))
        if n < 1:
            raise ValueError(f"feature type {name!r}: N must be at least 1")
        if n == 1:
            return "cls+mean" if match.group(3) else "cls"
    return name


def expand_feature_types(types: list[str] | None, last_blocks: list[int] | None) -> list[str] | None:
    """The DINOv2 linear-eval grid: for each n in last_blocks, CLS of the last n blocks, with and without
    the mean patch token; added to any explicitly listed types, duplicates removed, order kept."""
    if types is None and not last_blocks:
        return None
    out: list[str] = [canonical_feature_type(t) for t in (types or [])]
    for n in last_blocks or []:
        if n < 1:
            raise ValueError(f"last_blocks values must be >= 1, got {n}")
        out += [canonical_feature_type(f"last{n}"), canonical_feature_type(f"last{n}+mean")]
    return list(dict.fromkeys(out))


def _metric_name(value: str) -> str:
    if value not in METRIC_NAMES:
        from radbench.errors import did_you_mean

        raise ValueError(f"unknown metric {value!r}{did_you_mean(value, METRIC_NAMES)}; use one of "
                         f"{', '.join(METRIC_NAMES)}")
    return value


FeatureTypes = Annotated[list[str], AfterValidator(lambda values: [canonical_feature_type(v) for v in values])]
MetricName = Annotated[str, AfterValidator(_metric_name)]


# hyperparameter grids: a negative lr would run gradient ascent, k or C of 0 mean nothing
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]

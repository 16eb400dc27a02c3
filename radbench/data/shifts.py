"""The keys of a dataset entry that ask whether a model generalises: `external_tests` (other datasets' test splits,
classes matched by name), `subgroups` (metadata columns, ages binned by `age_bins`) and `corruptions`
(acquisition shifts applied to the test images)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from radbench.data.corruptions import DEFAULT_KINDS, KINDS
from radbench.errors import did_you_mean
from radbench.schema import StrictModel


class ExternalTestConfig(StrictModel):
    """`dataset`: another dataset of the study; the model chosen and refit on this one is applied to its test split
    (`split: all`: to every image of it). `classes`: {this dataset's class: the other's class}; default: matched
    by name through torchxrayvision's pathology vocabulary (radbench/data/class_match.py)."""

    dataset: str
    split: Literal["test", "all"] = "test"
    classes: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"dataset": value} if isinstance(value, str) else value

    @property
    def name(self) -> str:
        return f"external:{self.dataset}"


class CorruptionsConfig(StrictModel):
    """Test images corrupted at each severity (1 mild .. 5 severe), parameters from MedMNIST-C's table for the
    modality. A list is read as `kinds`."""

    kinds: list[str] = Field(default=list(DEFAULT_KINDS), min_length=1)
    severities: list[int] = Field(default=[1, 2, 3, 4, 5], min_length=1)
    modality: Literal["xray", "ct"] = "xray"

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value):
        if isinstance(value, list):
            return {"kinds": value}
        if value == "all":
            return {"kinds": list(KINDS)}
        return value

    @field_validator("kinds")
    @classmethod
    def _known(cls, kinds: list[str]) -> list[str]:
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown corruption {kind!r}{did_you_mean(kind, KINDS)}; known: {', '.join(KINDS)}")
        return list(dict.fromkeys(kinds))

    @field_validator("severities")
    @classmethod
    def _range(cls, severities: list[int]) -> list[int]:
        for severity in severities:
            if not 1 <= severity <= 5:
                raise ValueError(f"severity {severity} is outside 1-5")
        return sorted(set(severities))

    def names(self) -> list[str]:
        return [corruption_name(kind, severity) for kind in self.kinds for severity in self.severities]


def corruption_name(kind: str, severity: int) -> str:
    return f"corrupt:{kind}:{severity}"


def parse_corruption(name: str) -> tuple[str, int]:
    _, kind, severity = name.split(":")
    return kind, int(severity)

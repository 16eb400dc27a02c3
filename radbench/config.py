"""The study YAML: pydantic models, validated in full (keys, types, files, names) before any work starts.

Relative paths resolve against the study file's folder. Dataset and protocol entries are validated by the
config model their adapter / protocol registers, so every capability owns its own keys."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from radbench.backbones import BackboneConfig, resolve_entry
from radbench.data import ADAPTERS
from radbench.data.base import DatasetConfigBase
from radbench.errors import ConfigError, RadbenchError, did_you_mean
from radbench.overrides import Overrides
from radbench.presets import apply_preset
from radbench.protocols import PROTOCOLS, ProtocolConfigBase
from radbench.schema import FeatureTypes, MetricName, OutputPath, StrictModel
from radbench.yaml_file import load_yaml_file


@dataclass(frozen=True)
class ProtocolEntry:
    """One `protocols:` item: its type (the YAML key), its label and its validated config."""

    type: str
    label: str
    config: ProtocolConfigBase
    backbones: tuple[str, ...] | None = None  # `backbones: [...]` in the entry: only these (label or name)
    datasets: tuple[str, ...] | None = None  # `datasets: [...]` in the entry: only these (dataset names)

    def runs_on(self, backbone: BackboneConfig) -> bool:
        return self.backbones is None or backbone.display_name in self.backbones or backbone.name in self.backbones

    def runs_on_dataset(self, name: str) -> bool:
        return self.datasets is None or name in self.datasets


class StudySettings(StrictModel):
    """Top-level keys other than the backbone, dataset and protocol lists."""

    name: str
    output_dir: OutputPath
    cache_dir: OutputPath | None = None  # shared feature cache; default <output_dir>/features
    seeds: list[int] = Field(default=[0], min_length=1)
    image_size: int = Field(default=224, ge=8)  # explicit: DINOv2's timm config says 518
    resize: Literal["resize", "pad", "crop"] = "resize"  # resize (default), zero-pad (MedMNIST+) or crop
    # (shorter side to image_size / 0.875, centre crop: ImageNet's evaluation transform; classification only)
    features: FeatureTypes = ["cls"]  # default feature types of every protocol
    selection_metric: MetricName | None = None  # default: auroc (kappa for ordinal tasks)
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    batch_size: int = Field(default=64, ge=1)  # extraction batch size
    num_workers: int | None = Field(default=None, ge=0)  # data loading workers; default: by data source
    fit_workers: int | None = Field(default=None, ge=1)  # large probe grids' fits side by side; default: cores given
    cache_dtype: Literal["float16", "float32"] = "float16"
    preprocess_cache: Literal["auto", "on", "off"] = "auto"  # auto: for images decoded from files
    preprocess_dtype: Literal["uint8", "uint16"] = "uint8"
    # published numbers to set beside this study's (radbench/references): a shipped paper's name or a CSV path
    reference: str | list[str] | None = None
    deviations: list[str] = []  # how this study knowingly differs from the paper it follows (shown on the page)
    cost_baseline: str | None = None  # a backbone's name or label: the report shows every cost as a multiple of its

    @property
    def references(self) -> list[str]:
        return [] if self.reference is None else [self.reference] if isinstance(self.reference, str) \
            else list(self.reference)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "mps") and not value.startswith("cuda"):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return value


@dataclass(frozen=True)
class StudyConfig:
    settings: StudySettings
    backbones: list[BackboneConfig]
    datasets: list[DatasetConfigBase]
    protocols: list[ProtocolEntry]
    source: str = "study"
    focus: Any = None  # an executor's unit (executors/units.py): run only its backbone x dataset and jobs
    shrunk: bool = False  # shrunk on the command line (--limit, --backbone): variants that cannot run are dropped

    @property
    def feature_cache_dir(self) -> Path:
        return self.settings.cache_dir or self.settings.output_dir / "features"


def load_study(path: str | Path, overrides: Overrides | None = None) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    raw = load_yaml_file(path, "study file")
    return study_from_mapping(raw, path.resolve().parent, str(path), overrides)


def study_from_mapping(raw: Any, base_dir: Path, source: str, overrides: Overrides | None = None) -> StudyConfig:
    """A study as the YAML holds it (a file's contents, or a dict from Python): ${VARIABLES} expanded, the
    overrides applied, validated; relative paths resolve against `base_dir`."""
    errors: list[str] = []
    raw = _expand_variables(raw, "", errors)
    if overrides is not None:
        raw = overrides.apply(raw)
    if errors:
        raise ConfigError("\n".join(f"{source}: {e}" for e in errors))
    study = parse_study(raw, base_dir=base_dir, source=source)
    return dataclasses.replace(study, shrunk=True) if overrides is not None and overrides.shrinks else study


VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _expand_variables(value: Any, where: str, errors: list[str]) -> Any:
    """`${NAME}` / `${NAME:-default}` in string values from the environment (`--data-root DIR` sets
    RADBENCH_DATA): a shipped study names its data relative to roots each machine sets."""
    if isinstance(value, dict):
        return {k: _expand_variables(v, f"{where}.{k}" if where else str(k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_variables(v, f"{where}[{i}]", errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group("name"), match.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        hint = " (or pass --data-root DIR)" if name == "RADBENCH_DATA" else ""
        errors.append(f"{where}: ${{{name}}} is not set; export {name}=...{hint}")
        return match.group(0)

    return VARIABLE.sub(substitute, value)


def parse_study(raw: Any, base_dir: Path, source: str = "study") -> StudyConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the study must be a mapping of keys (name, output_dir, backbones, ...)")
    context = {"base_dir": base_dir}
    errors: list[str] = []
    lists = {key: raw.get(key) for key in ("backbones", "datasets", "protocols")}
    for key, value in lists.items():
        if not isinstance(value, list) or not value:
            errors.append(f"{key}: a non-empty list is required")
            lists[key] = []
    settings = _validate(StudySettings, {k: v for k, v in raw.items() if k not in lists}, "", context, errors)
    backbones = [_validate(BackboneConfig, item, f"backbones[{i}]", context, errors)
                 for i, item in enumerate(lists["backbones"])]
    datasets = [_dataset(item, f"datasets[{i}]", context, errors) for i, item in enumerate(lists["datasets"])]
    protocols = [_protocol(item, f"protocols[{i}]", context, errors) for i, item in enumerate(lists["protocols"])]
    if datasets and protocols and all(d is not None for d in datasets) and all(p is not None for p in protocols):
        _check_kinds(errors, datasets, protocols)  # a misspelled entry would only add a second, false error
    _check_crop(errors, settings, datasets)
    settings = _check_references(errors, settings, base_dir)
    _check_shifts(errors, [d for d in datasets if d], {item.get("name") for item in lists["datasets"]
                                                        if isinstance(item, dict)})
    _check_restrictions(errors, backbones, datasets, protocols)
    _check_names(errors, [("backbones", b.display_name) for b in backbones if b] +
                 [("datasets", d.name) for d in datasets if d] + [("protocols", p.label) for p in protocols if p])
    _unique(errors, "backbones", [b.display_name for b in backbones if b], "give each a distinct `label`")
    _unique(errors, "datasets", [d.name for d in datasets if d], "names must be distinct")
    _unique(errors, "protocols", [p.label for p in protocols if p], "give each a distinct `name`")
    others = bool(errors)
    for i, backbone in enumerate(backbones):
        # `family:model` names ask the family's library (timm imports torch, seconds): only once all else is valid
        if backbone is not None and (":" not in backbone.name or not others):
            try:
                resolve_entry(backbone.name)
            except RadbenchError as error:
                errors.append(f"backbones[{i}].name: {error}")
    if errors:
        raise ConfigError("\n".join(f"{source}: {e}" for e in errors))
    return StudyConfig(settings=settings, backbones=backbones, datasets=datasets, protocols=protocols, source=source)


def _validate(model: type[BaseModel], data: Any, where: str, context: dict, errors: list[str]):
    if not isinstance(data, dict):
        errors.append(f"{where or 'study'}: expected a mapping, got {type(data).__name__}")
        return None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        for item in error.errors():
            location = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown key" + _did_you_mean(item["loc"], model)
            errors.append(f"{location.lstrip('.') or 'study'}: {message}")
        return None


def _did_you_mean(location: tuple, model: type[BaseModel]) -> str:
    """' (did you mean `label_columns`?)' for a misspelt key of `model` itself (nested models: no guess); the study's
    own keys include its three lists."""
    if len(location) != 1 or not isinstance(location[0], str):
        return ""
    keys = [*model.model_fields, *(("backbones", "datasets", "protocols") if model is StudySettings else ())]
    return did_you_mean(location[0], keys, quote=lambda key: f"`{key}`", cutoff=0.6)


def _dataset(item: Any, where: str, context: dict, errors: list[str]) -> DatasetConfigBase | None:
    if not isinstance(item, dict) or "adapter" not in item:
        errors.append(f"{where}: needs an `adapter` key ({', '.join(ADAPTERS)})")
        return None
    if item["adapter"] not in ADAPTERS:
        errors.append(f"{where}.adapter: unknown adapter {item['adapter']!r}{did_you_mean(item['adapter'], ADAPTERS)}; "
                      f"known: {', '.join(ADAPTERS)}")
        return None
    return _validate(ADAPTERS.get(item["adapter"]).config, item, where, context, errors)


def _protocol(item: Any, where: str, context: dict, errors: list[str]) -> ProtocolEntry | None:
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        errors.append(f"{where}: write each protocol as `- <type>: {{...}}` with one of {', '.join(PROTOCOLS)}")
        return None
    (kind, body), = item.items()
    if kind not in PROTOCOLS:
        errors.append(f"{where}: unknown protocol {kind!r}{did_you_mean(kind, PROTOCOLS)}; known: {', '.join(PROTOCOLS)}")
        return None
    try:
        body = apply_preset(kind, body or {}) if isinstance(body, dict) else body
    except ValueError as error:
        errors.append(f"{where}.{kind}.preset: {error}")
        return None
    only: dict[str, tuple[str, ...] | None] = {"backbones": None, "datasets": None}
    for key, what in (("backbones", "backbone labels or names"), ("datasets", "dataset names")):
        if isinstance(body, dict) and key in body:
            body = dict(body)
            names = body.pop(key)
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                errors.append(f"{where}.{kind}.{key}: a list of the study's {what}")
            else:
                only[key] = tuple(names)
    config = _validate(PROTOCOLS.get(kind).config, body or {}, f"{where}.{kind}", context, errors)
    if config is None:
        return None
    return ProtocolEntry(type=kind, label=config.name or kind, config=config, **only)


def _check_names(errors: list[str], names: list[tuple[str, str]]) -> None:
    """Names become parts of file names (paths.folder_name): each must leave something readable."""
    from radbench.paths import name_problem

    for where, name in names:
        problem = name_problem(name)
        if problem:
            errors.append(f"{where}: the name {problem}; use letters, digits and -_.@")


def _check_restrictions(errors: list[str], backbones: list, datasets: list, protocols: list) -> None:
    """A protocol's `backbones:` / `datasets:` name backbones (labels or names) / datasets of the study; a
    `datasets:` list leaves the protocol at least one dataset of its kind (and no dataset of the other kind)."""
    known = {name for b in backbones if b for name in (b.display_name, b.name)}
    kinds = {d.name: ADAPTERS.get(d.adapter).kind for d in datasets if d}
    for i, entry in enumerate(protocols):
        for name in (entry.backbones or ()) if entry else ():
            if name not in known:
                errors.append(f"protocols[{i}].{entry.type}.backbones: {name!r} is not a backbone of this study"
                              + did_you_mean(name, known))
        protocol_kind = "segmentation" if entry and PROTOCOLS.get(entry.type).inputs == "segmentation" \
            else "classification"
        for name in (entry.datasets or ()) if entry else ():
            if name not in kinds:
                errors.append(f"protocols[{i}].{entry.type}.datasets: {name!r} is not a dataset of this study"
                              + did_you_mean(name, kinds))
            elif kinds[name] != protocol_kind:
                errors.append(f"protocols[{i}].{entry.type}.datasets: {name!r} is a {kinds[name]} dataset; "
                              f"{entry.type} is a {protocol_kind} protocol")


def _check_crop(errors: list[str], settings, datasets: list) -> None:
    """Cropping drops the image's edges: a segmentation mask would lose them too."""
    for dataset in datasets:
        if dataset and ADAPTERS.get(dataset.adapter).kind == "segmentation" and \
                (dataset.resize or (settings.resize if settings else None)) == "crop":
            errors.append(f"datasets: {dataset.name!r} is a segmentation dataset; resize: crop is for "
                          "classification (use resize or pad)")


def _check_references(errors: list[str], settings, base_dir: Path):
    """Each reference is a shipped paper or a readable CSV of published numbers (read here; a CSV's path made
    absolute, as the run stores the numbers with the study)."""
    if settings is None or not settings.references:
        return settings
    from radbench.references import PAPERS, load_reference

    resolved = []
    for name in settings.references:
        try:
            load_reference(name, base_dir)
            resolved.append(name if name in PAPERS else str((Path(base_dir) / name).resolve()))
        except RadbenchError as error:
            errors.append(f"reference: {error}")
    return settings.model_copy(update={"reference": resolved})


def _check_shifts(errors: list[str], datasets: list, entries: set) -> None:
    """External tests name other classification datasets of the study; shifts apply to classification only.
    `entries`: every dataset entry's name, also those whose own error is already said (not said twice)."""
    kinds = {d.name: ADAPTERS.get(d.adapter).kind for d in datasets}
    named = set()
    for i, dataset in enumerate(datasets):
        where = f"datasets[{i}] ({dataset.name})"
        if kinds[dataset.name] == "segmentation":
            for key in ("external_tests", "subgroups", "corruptions", "external_only", "resplit"):
                if getattr(dataset, key):
                    errors.append(f"{where}.{key}: applies to classification datasets, not segmentation")
            continue
        if dataset.volume is not None and (dataset.external_tests or dataset.corruptions):
            errors.append(f"{where}: external_tests and corruptions apply to 2D images; this dataset holds volumes")
        for j, external in enumerate(dataset.external_tests):
            named.add(external.dataset)
            if external.dataset == dataset.name:
                errors.append(f"{where}.external_tests[{j}]: a dataset cannot be its own external test")
            elif external.dataset not in kinds and external.dataset in entries:
                continue  # that dataset's entry has its own error
            elif external.dataset not in kinds:
                errors.append(f"{where}.external_tests[{j}]: {external.dataset!r} is not a dataset of this study"
                              + did_you_mean(external.dataset, kinds))
            elif kinds[external.dataset] != "classification":
                errors.append(f"{where}.external_tests[{j}]: {external.dataset!r} is a segmentation dataset")
        if dataset.external_only and (dataset.corruptions or dataset.external_tests):
            errors.append(f"{where}: external_only datasets run no protocol; corruptions and external_tests "
                          "belong on the dataset the models are trained on")
    for i, dataset in enumerate(datasets):
        if dataset.external_only and dataset.name not in named:
            errors.append(f"datasets[{i}] ({dataset.name}).external_only: no dataset names it in external_tests")


def _check_kinds(errors: list[str], datasets: list, protocols: list) -> None:
    """Segmentation protocols need segmentation datasets and classification protocols the others; a protocol
    runs on every dataset of its kind, so each side needs at least one partner."""
    def kind_of_protocol(entry: ProtocolEntry) -> str:
        return "segmentation" if PROTOCOLS.get(entry.type).inputs == "segmentation" else "classification"

    dataset_kinds = {d.name: ADAPTERS.get(d.adapter).kind for d in datasets if d}
    protocol_kinds = {p.label: kind_of_protocol(p) for p in protocols if p}
    for name, kind in dataset_kinds.items():
        if not any(kind == kind_of_protocol(p) and p.runs_on_dataset(name) for p in protocols if p):
            errors.append(f"datasets: {name!r} is a {kind} dataset but no protocol of that kind runs on it")
    for label, kind in protocol_kinds.items():
        if kind not in dataset_kinds.values():
            errors.append(f"protocols: {label!r} needs a {kind} dataset and none is listed")


def _unique(errors: list[str], key: str, names: list[str], hint: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            errors.append(f"{key}: {name!r} appears twice; {hint}")
        seen.add(name)

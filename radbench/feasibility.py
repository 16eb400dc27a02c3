"""Which protocol variants a backbone x dataset can run, known before any model is built: blocks to keep or freeze
within the backbone's depth (its architecture on the meta device), few-shot draws that find their patients.

A full study stops at its start on the first variant that cannot run (one line naming the protocol, backbone and
what to change). A study shrunk on the command line (`--limit`, `--backbone`) drops such variants instead, one
line each, so that a shipped study's "try it shrunk" line runs: 16 shots need more patients than `--limit 40`
leaves, and `keep_blocks: [9]` more blocks than a ViT-Tiny has."""

from __future__ import annotations

import difflib

from radbench.backbones.architecture import Architecture, architecture
from radbench.config import ProtocolEntry, StudyConfig
from radbench.errors import ConfigError, DataError
from radbench.protocols import PROTOCOLS

BLOCK_KEYS = {"keep_blocks": "keep", "frozen_blocks": "freeze"}


def block_problem(variant, arch: Architecture | None, backbone: str) -> str | None:
    """Why the variant's kept or frozen blocks do not fit the backbone (None: they fit, or it is unknown)."""
    if arch is None:
        return None
    for key, verb in BLOCK_KEYS.items():
        values = getattr(variant, key, None) or []
        wanted = [v for v in values if v > 0]
        if not wanted:
            continue
        if arch.depth is None:
            return f"{key} {wanted}: {backbone} has no transformer blocks to {verb}"
        too_deep = [v for v in wanted if v > arch.depth]
        if too_deep:
            return f"{key} {too_deep} exceeds the {arch.depth} blocks of {backbone}"
    return None


def lora_problem(variant, arch: Architecture | None, backbone: str) -> str | None:
    """Why LoRA's target modules are not in the backbone (None: they are, or it is unknown)."""
    targets = getattr(variant, "target_modules", None)
    if arch is None or not targets or not hasattr(variant, "rank"):
        return None
    missing = arch.lora_missing(targets)
    if not missing:
        return None
    linear_like = sorted(n for n in arch.module_names if n in _LORA_CANDIDATES or n.startswith(("fc", "proj")))
    near = sorted({m for t in missing for m in difflib.get_close_matches(t, sorted(arch.module_names), n=3)})
    hint = f"; it has {', '.join(linear_like[:8])}" if linear_like else (
        f"; near names it has: {', '.join(near)}" if near else "; it has no attention or linear blocks to adapt")
    return f"LoRA target_modules {missing} are not modules of {backbone}{hint}"


_LORA_CANDIDATES = {"qkv", "query", "key", "value", "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "proj",
                    "attn", "dense", "in_proj", "c_fc", "c_proj"}


def data_problem(spec, variant, dataset, seeds: list[int]) -> str | None:
    """Why the data cannot serve the variant (few-shot draws without enough patients), from the protocol's check."""
    if spec.check is None:
        return None
    try:
        spec.check(variant, dataset, seeds)
    except DataError as error:
        return str(error)
    return None


def usable_variants(study: StudyConfig, backbone, dataset, entry: ProtocolEntry) -> tuple[list, list[str]]:
    """The entry's variants this backbone x dataset runs, and a line for each one a shrunk study leaves out."""
    spec = PROTOCOLS.get(entry.type)
    variants = spec.variants(entry.config)
    if not study.shrunk:
        return variants, []
    arch = architecture(backbone, backbone.image_size or study.settings.image_size, flops=False)
    kept, notes = [], []
    for suffix, variant in variants:
        problem = block_problem(variant, arch, backbone.display_name) or \
            lora_problem(variant, arch, backbone.display_name) or \
            data_problem(spec, variant, dataset, study.settings.seeds)
        if problem is None:
            kept.append((suffix, variant))
        else:
            label = entry.label if suffix is None else f"{entry.label}@{suffix}"
            notes.append(f"{label} left out of this shrunk run on {backbone.display_name} x {dataset.name}: "
                         f"{' '.join(problem.split())}")
    return kept, notes


def shrink_notes(study: StudyConfig, backbone, dataset) -> list[str]:
    """The lines saying which variants a shrunk study leaves out on this backbone x dataset."""
    from radbench.data.segmentation import SegmentationDataset

    segmentation = isinstance(dataset, SegmentationDataset)
    return [note for entry in study.protocols
            if (PROTOCOLS.get(entry.type).inputs == "segmentation") == segmentation and entry.runs_on(backbone)
            and entry.runs_on_dataset(dataset.name)
            for note in usable_variants(study, backbone, dataset, entry)[1]]


def check_blocks(study: StudyConfig) -> None:
    """A full study: every protocol's kept or frozen blocks fit every backbone it runs on, or one error line."""
    if study.shrunk:
        return
    for backbone in study.backbones:
        entries = [(entry, PROTOCOLS.get(entry.type)) for entry in study.protocols]
        if not any(getattr(entry.config, key, None) for entry, _ in entries for key in (*BLOCK_KEYS, "target_modules")):
            continue
        arch = architecture(backbone, backbone.image_size or study.settings.image_size, flops=False)
        for entry, _ in entries:
            if not entry.runs_on(backbone):
                continue
            problem = block_problem(entry.config, arch, backbone.display_name)
            if problem:
                raise ConfigError(f"protocol {entry.label}: {problem}; lower it, or give the protocol "
                                  f"`backbones: [...]` naming the deeper ones")
            problem = lora_problem(entry.config, arch, backbone.display_name)
            if problem:
                raise ConfigError(f"protocol {entry.label}: {problem}; set target_modules to names it has, or "
                                  f"give the protocol `backbones: [...]` without {backbone.display_name}")

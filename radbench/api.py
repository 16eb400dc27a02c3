"""radbench from Python: `radbench.run(study, **overrides)` runs a study (a YAML path, a dict as the YAML would
hold it, or a parsed StudyConfig) and returns its `Results`; `radbench.register_backbone` adds an in-house model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radbench.errors import JobFailed


def run(study: str | Path | dict | Any, *, output_dir: str | Path | None = None, limit: int | None = None,
        backbones: list[str] | tuple[str, ...] = (), weights: str | None = None, image_size: int | None = None,
        seeds: list[int] | tuple[int, ...] = (), epochs: int | None = None, quiet: bool = True,
        fail_fast: bool = False, raise_on_failure: bool = True):
    """Run every job of `study` not stored yet and return `radbench.load(output_dir)`.

    The keyword overrides are the CLI's (`--limit`, `--backbone`, `--seeds`, ...). A failing job is recorded and
    the others run; then `JobFailed` lists the failures (`raise_on_failure=False`: the results are returned and
    `results.status` shows them). `fail_fast=True` stops at the first."""
    from radbench.config import StudyConfig, load_study, study_from_mapping
    from radbench.overrides import Overrides
    from radbench.progress import Reporter
    from radbench.report.api import load
    from radbench.runner import run_study

    overrides = Overrides(str(Path(output_dir).resolve()) if output_dir else None, limit, tuple(backbones), weights,
                          image_size, tuple(seeds), epochs)
    if isinstance(study, StudyConfig):
        if any(value not in (None, ()) for value in vars(overrides).values()):
            raise TypeError("overrides apply to a study given as a path or a dict, not to a parsed StudyConfig")
        config = study
    elif isinstance(study, dict):
        config = study_from_mapping(study, Path.cwd(), "study", overrides)
    else:
        config = load_study(study, overrides)
    summary = run_study(config, Reporter(quiet=quiet), fail_fast=fail_fast)
    if summary.failures and raise_on_failure:
        raise JobFailed(f"{len(summary.failures)} job(s) failed (recorded; the other jobs ran): "
                        + "; ".join(summary.failures))
    return load(config.settings.output_dir)


def register_backbone(name: str, **options):
    """See radbench.backbones.custom_family: `@register_backbone("name", mean=..., std=..., version=...)` on a
    `build(image_size, weights) -> nn.Module` function."""
    from radbench.backbones.custom_family import register_backbone as register

    return register(name, **options)

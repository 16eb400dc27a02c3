"""radbench from Python: `radbench.run(study, **overrides)` runs a study (a YAML path, a dict as the YAML would
hold it, or a parsed StudyConfig) and returns its `Results`; `radbench.register_backbone` adds an in-house model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radbench.errors import ConfigError, JobFailed


def run(study: str | Path | dict | Any, *, output_dir: str | Path | None = None, limit: int | None = None,
        backbones: list[str] | tuple[str, ...] = (), weights: str | None = None, image_size: int | None = None,
        seeds: list[int] | tuple[int, ...] = (), epochs: int | None = None, quiet: bool | None = None,
        fail_fast: bool = False, raise_on_failure: bool = True):
    """Run every job of `study` not stored yet and return `radbench.load(output_dir)`.

    The keyword overrides are the CLI's (`--limit`, `--backbone`, `--seeds`, ...). A failing job is recorded and
    the others run; then `JobFailed` lists the failures (`raise_on_failure=False`: the results are returned and
    `results.status` shows them). `fail_fast=True` stops at the first. `quiet`: by default progress is shown in an
    interactive session (a notebook, a terminal) and kept quiet elsewhere (scripts with redirected output, tests)."""
    from radbench.config import StudyConfig, load_study, study_from_mapping
    from radbench.overrides import Overrides
    from radbench.progress import Reporter
    from radbench.report.api import load
    from radbench.runner import run_study

    if not isinstance(study, (str, Path, dict, StudyConfig)):
        raise ConfigError(f"radbench.run: study is a {type(study).__name__} ({study!r:.60}); give a YAML file's path, "
                          "a dict as the YAML would hold it, or a StudyConfig")
    overrides = Overrides(str(Path(output_dir).resolve()) if output_dir else None,
                          _count("limit", limit), _names(backbones), weights, _count("image_size", image_size),
                          _seeds(seeds), _count("epochs", epochs))
    if isinstance(study, StudyConfig):
        if any(value not in (None, ()) for value in vars(overrides).values()):
            raise TypeError("overrides apply to a study given as a path or a dict, not to a parsed StudyConfig")
        config = study
    elif isinstance(study, dict):
        config = study_from_mapping(study, Path.cwd(), "study", overrides)
    else:
        config = load_study(study, overrides)
    summary = run_study(config, Reporter(quiet=not _interactive() if quiet is None else quiet), fail_fast=fail_fast)
    if summary.failures and raise_on_failure:
        raise JobFailed(f"{len(summary.failures)} job(s) failed (recorded; the other jobs ran): "
                        + "; ".join(summary.failures))
    return load(config.settings.output_dir)


def _interactive() -> bool:
    """A Jupyter / IPython kernel, or a terminal on stderr: where progress lines are wanted."""
    import sys

    shell = sys.modules.get("IPython")
    if shell is not None and getattr(shell, "get_ipython", lambda: None)() is not None:
        return True
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _seeds(seeds) -> tuple[int, ...]:
    """seeds=[0, 1, 2], (0, 1) or "0,1,2" as the CLI's --seeds takes it."""
    values = seeds.split(",") if isinstance(seeds, str) else seeds
    try:
        if isinstance(values, (int, float)) or any(isinstance(v, (bool, float)) for v in values):
            raise ValueError
        return tuple(int(str(v).strip()) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"radbench.run: seeds={seeds!r}: give integers, e.g. seeds=[0, 1, 2] or \"0,1,2\"") from None


def _names(backbones) -> tuple[str, ...]:
    if isinstance(backbones, str):
        return (backbones,)
    if not isinstance(backbones, (list, tuple)) or not all(isinstance(b, str) for b in backbones):
        raise ConfigError(f"radbench.run: backbones={backbones!r}: give backbone names, e.g. [\"timm:vit_small\"]")
    return tuple(backbones)


def _count(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"radbench.run: {name}={value!r}: give a positive whole number")
    return value


def register_backbone(name: str, **options):
    """See radbench.backbones.custom_family: `@register_backbone("name", mean=..., std=..., version=...)` on a
    `build(image_size, weights) -> nn.Module` function."""
    from radbench.backbones.custom_family import register_backbone as register

    return register(name, **options)

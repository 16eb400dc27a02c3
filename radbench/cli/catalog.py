"""`radbench list` and `radbench quickstart`: what a study can name, and a first study."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.panel import Panel
from rich.table import Table

from radbench.cli.common import (
    QUIET,
    _print_summary,
    _run,
    app,
    err,
    out,
    user_errors,
)
from radbench.errors import DownloadError, RadbenchError


class ListWhat(str, Enum):
    backbones = "backbones"
    datasets = "datasets"
    protocols = "protocols"


@app.command("list")
@user_errors
def list_(what: ListWhat = typer.Argument(..., help="backbones, datasets or protocols"),
          wide: bool = typer.Option(False, "--wide", help="backbones: every column (source, patch, normalisation, "
                                    "feature types, licence), for a wide terminal")):
    """List what a study can name."""
    table = Table()
    if what is ListWhat.backbones:
        _backbones(table, wide)
    elif what is ListWhat.datasets:
        from radbench.data import ADAPTERS
        from radbench.data.base import DatasetConfigBase

        common = DatasetConfigBase.model_fields
        table.add_column("adapter", no_wrap=True)
        table.add_column("description", overflow="fold")
        table.add_column("its own keys (=default; required without one)", overflow="fold")
        for name, adapter in ADAPTERS.items():
            own = [_key_with_default(key, field) for key, field in adapter.config.model_fields.items()
                   if key not in common or _key_with_default(key, field) != _key_with_default(key, common[key])]
            table.add_row(name, adapter.description, ", ".join(own))
    else:
        from radbench.protocols import PROTOCOLS

        table.add_column("protocol")
        table.add_column("description")
        table.add_column("defaults")
        for name, spec in PROTOCOLS.items():
            defaults = spec.config().model_dump(exclude={"name", "features", "last_blocks", "selection_metric"})
            table.add_row(name, spec.description, ", ".join(f"{k}={_short(v)}" for k, v in defaults.items()))
    out.print(table)
    if what is ListWhat.datasets:
        from radbench.data.base import DatasetConfigBase

        every = ", ".join(_key_with_default(k, f) for k, f in DatasetConfigBase.model_fields.items())
        out.print(f"every dataset also takes: {every}", highlight=False, soft_wrap=True)
    if what is ListWhat.protocols:
        out.print("every protocol also takes: name, preset, features, last_blocks, selection_metric, calibrate, "
                  "backbones: [...] and datasets: [...] (run on those only)", highlight=False, soft_wrap=True)
    if what is ListWhat.backbones:
        from radbench.backbones.base import NOT_OFFERED

        if not wide:
            out.print("left out here: source, patch, normalisation, feature types, licence (radbench list backbones "
                      "--wide)", highlight=False, soft_wrap=True)

        for name, why in NOT_OFFERED.items():
            out.print(f"not offered: {name} — {why}", highlight=False, soft_wrap=True)


BACKBONE_COLUMNS = ("name", "family", "source", "params", "native", "patch", "norm", "features", "text", "licence",
                    "description")
NARROW_BACKBONE_COLUMNS = ("name", "family", "params", "native", "text", "description")


def _backbones(table: Table, wide: bool) -> None:
    """The zoo's named entries, then the open families; `wide`: every column, else those a choice starts from."""
    from radbench.backbones import BACKBONES
    from radbench.backbones.text import entry_has_text

    shown = BACKBONE_COLUMNS if wide else NARROW_BACKBONE_COLUMNS
    for column in shown:
        table.add_column(column, justify="right" if column in ("params", "native", "patch") else "left",
                         overflow="fold", no_wrap=column in ("name", "family"))  # a name is copied whole
    rows = [[name, entry.family, entry.model_id, f"{entry.params_m:g}M" if entry.params_m else "",
             str(entry.native or ""), str(entry.patch or "-"), entry.normalisation, entry.feature_types,
             "zero-shot" if entry_has_text(entry) else "-", entry.licence, entry.description]
            for name, entry in BACKBONES.items()]
    rows += [
        ["timm:<model>", "timm", "any timm model", "", "", "", "from its config", "by model", "-", "",
         "e.g. timm:convnext_small.fb_in22k"],
        ["hf:<org/repo>", "hf", "a transformers vision model", "", "", "", "its image processor",
         "cls, mean, lastN (pool without CLS)", "CLIP / SigLIP repos", "the repo's",
         "e.g. hf:microsoft/rad-dino, hf:facebook/vit-msn-base, hf:google/medsiglip-448; or weights: a "
         "save_pretrained folder"],
        ["open_clip:<model>/<tag>", "open_clip", "an open_clip image tower", "", "", "", "its preprocess config",
         "cls, mean, lastN, embed", "zero-shot", "the tag's",
         "e.g. open_clip:ViT-B-16/laion2b_s34b_b88k, open_clip:hf-hub:<repo>"],
        ["xrv:<weights>", "xrv", "a torchxrayvision model", "", "", "-", "xrv [-1024, 1024]", "pool", "-",
         "apache-2.0", "e.g. xrv:densenet121-res224-chex"]]
    for row in rows:
        table.add_row(*(value for column, value in zip(BACKBONE_COLUMNS, row) if column in shown))


def _key_with_default(key: str, field) -> str:
    """`key=default`, or the key alone where it is required."""
    if field.is_required():
        return key
    default = field.get_default(call_default_factory=True)
    default = getattr(default, "value", default)  # an enum by the word a study writes
    if isinstance(default, str) and (not default or "," in default or " " in default):
        return f"{key}={default!r}"  # '' or ',' would vanish into the list
    return f"{key}={_short(default)}"


def _short(value) -> str:
    if isinstance(value, list) and len(value) > 4 and all(isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:g} .. {value[-1]:g}] ({len(value)} values)"
    if isinstance(value, list) and len(value) > 4:
        return f"[{value[0]}, {value[1]}, ... ({len(value)} values)]"
    return str(value)


@app.command()
@user_errors
def quickstart(
    offline: bool = typer.Option(False, "--offline", help="random-init weights, no downloads (numbers meaningless)"),
    data: Optional[Path] = typer.Option(None, help="local PneumoniaMNIST npz instead of downloading"),
    output_dir: Path = typer.Option(Path("runs/quickstart"), help="where results and features go"),
    backbone: str = typer.Option("dinov2_vits14", help="backbone registry name or timm:<model>"),
    limit: int = typer.Option(200, help="samples per split"),
    image_size: int = typer.Option(224, help="input size of the backbone"),
    batch_size: int = typer.Option(64, help="extraction batch size"),
    quiet: bool = QUIET,
):
    """A real small study end to end: PneumoniaMNIST, DINOv2 ViT-S/14, kNN + linear + logistic regression."""
    from radbench.quickstart import measured_cost, quickstart_study

    if offline:
        err.print(Panel(
            "[bold]OFFLINE: the backbone has RANDOM weights.[/] The numbers below measure a random network, "
            "not DINOv2; they are meaningless as a benchmark. Run without --offline (network needed) for real "
            "pretrained weights.", title="radbench quickstart --offline", border_style="red"))
    study = quickstart_study(output_dir, data, offline, backbone, limit, image_size, batch_size)
    err.print(f"quickstart: up to {3 * limit} PneumoniaMNIST images through {backbone} at {image_size} px, then kNN, "
              f"linear probe and logistic regression ({measured_cost()} with the defaults)", highlight=False)
    try:
        _run(study, quiet)
    except DownloadError as error:
        raise RadbenchError(f"{error}\nwithout network: radbench quickstart --offline --data PATH/TO/pneumoniamnist.npz "
                            "(random weights, numbers meaningless)") from None
    _print_summary(study.settings.output_dir)
    if offline:
        err.print("[bold red]reminder: random weights (--offline); these numbers are not a benchmark.[/]")
    err.print(f"next: radbench report {study.settings.output_dir}   (one HTML page with intervals and figures)",
              highlight=False)

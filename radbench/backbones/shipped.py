"""The structure of the timm models radbench names (the zoo's and timm's test models), shipped as architectures.json
and written by `python -m radbench.backbones.architecture`: read by the checks and the timm name check, so that on a
new machine neither imports timm. Used only where the installed timm has the minor version it was made with."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SHIPPED = Path(__file__).with_name("architectures.json")


@lru_cache(maxsize=1)
def shipped_models() -> dict:
    """timm architecture name -> its row (depth, module names, LoRA aliases); empty for another timm minor version."""
    from importlib.metadata import version

    table = json.loads(SHIPPED.read_text())
    return table["models"] if table["timm"] == ".".join(version("timm").split(".")[:2]) else {}


def shipped_architecture_names() -> frozenset[str]:
    return frozenset(shipped_models())

"""`save_model: true`: the chosen (refit) model of a training protocol, written beside the results so that any
study can load its backbone as `weights:` (cross-task reuse: fine-tuned for classification, then segmented; CKA
before and after fine-tuning).

    OUT/models/<backbone>/<dataset>/<protocol>/seed<k>/
        backbone.pt   the trunk's state dict (LoRA adapters merged into the weights), the model's own layout
        head.pt       the head's state dict
        model.json    what it is and how to use it (the backbone entry to paste into a study)"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
from pathlib import Path

import torch
from torch import nn


def atomic_save(state: dict, path: Path) -> None:
    """Written under a temporary name and renamed: the previous file stays whole (and loadable) if the write
    fails; a full disk or a read-only place is one line naming the file."""
    with written_whole(path) as temporary:
        torch.save(state, temporary)


@contextlib.contextmanager
def written_whole(path: Path):
    """Yield a temporary path beside `path`; rename it into place when the block ends, else remove it and raise
    the failure as one line (torch's zip writer reports a full disk as a RuntimeError, not an OSError)."""
    from radbench.arrayfile import temporary_path, write_error

    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except Exception as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        if not isinstance(error, RuntimeError) and "Safetensor" not in type(error).__name__:
            raise
        cause = OSError(errno.ENOSPC, "disk full") if "unexpected pos" in str(error) or "write" in str(error).lower() \
            else OSError(errno.EIO, " ".join(str(error).split())[:200])
        raise write_error(path, cause) from None


def trunk_weights(trunk: nn.Module) -> dict[str, torch.Tensor]:
    """The trunk's plain weights: a peft-wrapped trunk has its adapters merged into a copy first."""
    if hasattr(trunk, "merge_and_unload"):
        trunk = copy.deepcopy(trunk).merge_and_unload()
    return {k: v.detach().cpu().contiguous() for k, v in trunk.state_dict().items()}


def save_trained(folder: Path, trunk: nn.Module, head: nn.Module, description: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(trunk_weights(trunk), folder / "backbone.pt")
    atomic_save({k: v.detach().cpu() for k, v in head.state_dict().items()}, folder / "head.pt")
    usage = {"name": description["backbone"]["name"], "weights": str((folder / "backbone.pt").resolve()),
             "label": f"{description['backbone']['label']}+{description['protocol']}"}
    if description["backbone"].get("model_kwargs"):
        usage["model_kwargs"] = description["backbone"]["model_kwargs"]
    (folder / "model.json").write_text(json.dumps({**description, "use_as_backbone": usage}, indent=2) + "\n")
    return folder

"""What a pretraining run leaves on disk, each file written to a temporary name and renamed:

    OUT/state.pt                  the resumable state: student, teacher, optimizer, loss centres, step
    OUT/log.jsonl                 one line per step: losses, lr, weight decay, momentum, monitors, img/s
    OUT/checkpoints/step<N>/
        backbone.safetensors      the teacher's backbone in the registry model's own layout; its metadata carry
                                  the preprocessing it was trained with (read back when loaded as `weights:`)
        model.json                what it is, and the backbone entry to paste into a study

Schedules, data order, views and masks are functions of (seed, step), so model + optimizer + centres + step
is the whole state: a resumed run continues bit for bit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from radbench import arrayfile
from radbench.backbones.checkpoint import PREPROCESS_KEY
from radbench.errors import ConfigError
from radbench.training.saving import atomic_save, trunk_weights, written_whole

STATE_VERSION = 1


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def save_state(path: Path, *, step: int, identity: dict, student, teacher, objective, optimizer) -> None:
    state = {"version": STATE_VERSION, "step": step, "identity": identity_hash(identity),
             "student": student.state_dict(), "teacher": teacher.state_dict(), "objective": objective.state_dict(),
             "optimizer": optimizer.state_dict()}
    atomic_save(state, path)


def load_state(path: Path, identity: dict, *, student, teacher, objective, optimizer) -> int:
    """Restore a saved state into the built objects; returns its step (0 when there is none)."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn file cannot exist (rename), but a foreign or damaged one can
        raise ConfigError(f"{path}: cannot read the pretraining state ({type(error).__name__}); move it aside to "
                          "start over") from None
    if state.get("identity") != identity_hash(identity):
        raise ConfigError(f"{path}: written by a different pretraining config (method, data, schedule, ...); "
                          "use a new output_dir, or restore the config it was written with")
    student.load_state_dict(state["student"])
    teacher.load_state_dict(state["teacher"])
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def export_teacher(folder: Path, teacher, *, step: int, backbone: dict, preprocess: dict, description: dict) -> Path:
    """The teacher's backbone as a weights file any study accepts; returns its path."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "backbone.safetensors"
    weights = trunk_weights(teacher.trunk)
    with written_whole(target) as temporary:
        save_file(weights, str(temporary), metadata={PREPROCESS_KEY: json.dumps(preprocess), "step": str(step)})
    usage = {"name": backbone["name"], "weights": str(target.resolve()), "label": f"{backbone['label']}@step{step}"}
    if backbone.get("model_kwargs"):
        usage["model_kwargs"] = backbone["model_kwargs"]
    text = json.dumps({**description, "step": step, "preprocess": preprocess, "use_as_backbone": usage}, indent=2)
    arrayfile.write_text(folder / "model.json", text + "\n")
    return target


def checkpoint_folder(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step{step:07d}"


def saved_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, weights path) of every complete checkpoint, by step."""
    found = []
    for folder in sorted((Path(output_dir) / "checkpoints").glob("step*")):
        weights, described = folder / "backbone.safetensors", folder / "model.json"
        if weights.is_file() and described.is_file() and folder.name[4:].isdigit():
            found.append((int(folder.name[4:]), weights))
    return found

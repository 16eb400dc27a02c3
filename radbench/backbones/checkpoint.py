"""Loading a local checkpoint file into a built model, including the original torch.hub DINOv2 layout."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from radbench.errors import BackboneError

if TYPE_CHECKING:
    import torch

WRAPPER_KEYS = ("teacher", "model", "state_dict", "module", "model_state_dict")
PREFIXES = ("module.", "backbone.", "_orig_mod.", "encoder.")
PREPROCESS_KEY = "radbench_preprocess"  # safetensors metadata of `radbench pretrain` weights: their preprocessing


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import argparse

            # training checkpoints (timm's saver, DINO's) keep their command line as a Namespace: plain data
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/pickle/zip raise many unrelated types for a bad file
        # torch's message runs to several lines of advice (e.g. weights_only=False, unsafe here): keep one
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise BackboneError(f"{path}: cannot read checkpoint, not a PyTorch or safetensors weights file "
                            f"({type(error).__name__}: {first[:120]})") from None
    for key in WRAPPER_KEYS:  # e.g. DINO training checkpoints keep the backbone under 'teacher'
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path}: checkpoint holds no state dict of tensors")
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) or k.startswith("head.") for k in state):
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


def load_checkpoint(model: torch.nn.Module, path: Path, head_prefixes: tuple[str, ...]) -> None:
    """Load weights strictly (apart from classifier heads), converting known layouts with timm's filters.

    timm's vision_transformer filter converts the torch.hub DINOv2 layout (mask_token, register_tokens,
    SwiGLU w12/w3) and resamples position embeddings to the model's grid."""
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as error:
            raise BackboneError(f"{path}: checkpoint does not fit {type(model).__name__} ({error})") from None
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatch
        first = str(error).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[-1])
        raise BackboneError(f"{path}: checkpoint does not fit the model: {detail}") from None
    missing = [k for k in missing if not k.startswith(head_prefixes)]
    if missing or unexpected:
        problem = f"missing {len(missing)} keys (e.g. {missing[:3]})" if missing else ""
        if unexpected:
            problem += ("; " if problem else "") + f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        raise BackboneError(f"{path}: checkpoint does not fit the model: {problem}")


def checkpoint_preprocessing(path: Path) -> dict | None:
    """The preprocessing a radbench-trained weights file records (None for other files)."""
    if path.suffix != ".safetensors":
        return None
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # not readable as safetensors: loading the weights reports it
        return None
    return json.loads(metadata[PREPROCESS_KEY]) if PREPROCESS_KEY in metadata else None

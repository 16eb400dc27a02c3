"""Folder names made from labels (backbones, protocols), shared by what writes under OUT/ and what reads it."""

from __future__ import annotations

from pathlib import Path


def folder_name(label: str) -> str:
    """A label as one file or folder name: letters, digits and -_.@ kept, anything else (/, :, spaces, <, quotes)
    as _, a leading dot as _ (no hidden files, never `..`). Every user-given name that becomes part of a path
    (dataset, backbone label, protocol name) goes through here, so nothing is written outside its folder."""
    safe = "".join(c if (c.isalnum() and c.isascii()) or c in "-_.@" else "_" for c in label)
    return "_" + safe[1:] if safe.startswith(".") else safe


def name_problem(name: str) -> str | None:
    """Why a name cannot become a readable file name (None: it can)."""
    if not name.strip():
        return "is empty"
    if not folder_name(name).strip("._"):
        return f"{name!r} has no letter or digit to name its files by"
    return None


def job_folder(output_dir: Path, kind: str, backbone: str, dataset: str, protocol: str, seed: int,
               repeat: int = 0) -> Path:
    """OUT/<kind>/<backbone>/<dataset>/<protocol>/seed<k>[-repeat<r>]: where a job's files go (kind: segmentation
    for predictions and overlays, models for saved models)."""
    leaf = f"seed{seed}" + (f"-repeat{repeat}" if repeat else "")
    return Path(output_dir) / kind / folder_name(backbone) / folder_name(dataset) / folder_name(protocol) / leaf

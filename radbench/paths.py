"""Folder names made from labels (backbones, protocols), shared by what writes under OUT/ and what reads it."""

from __future__ import annotations

from pathlib import Path


def folder_name(label: str) -> str:
    """A label as one folder name: letters, digits and -_.@ kept, anything else (/, :, spaces) as _."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)


def job_folder(output_dir: Path, kind: str, backbone: str, dataset: str, protocol: str, seed: int,
               repeat: int = 0) -> Path:
    """OUT/<kind>/<backbone>/<dataset>/<protocol>/seed<k>[-repeat<r>]: where a job's files go (kind: segmentation
    for predictions and overlays, models for saved models)."""
    leaf = f"seed{seed}" + (f"-repeat{repeat}" if repeat else "")
    return Path(output_dir) / kind / folder_name(backbone) / dataset / folder_name(protocol) / leaf

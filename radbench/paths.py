"""Folder names made from labels (backbones, protocols), shared by what writes under OUT/ and what reads it."""

from __future__ import annotations


def folder_name(label: str) -> str:
    """A label as one folder name: letters, digits and -_.@ kept, anything else (/, :, spaces) as _."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)

"""Seed presets fill exactly their documented keys, the entry's own keys win, and a wrong name is one error."""

from __future__ import annotations

import pytest

from radbench.config import parse_study
from radbench.errors import ConfigError
from radbench.presets import PRESETS
from radbench.protocols import PROTOCOLS


def _entry(tmp_path, protocol: dict, kind: str = "classification"):
    dataset = {"name": "d", "adapter": "medmnist", "path": str(tmp_path / "d.npz")} if kind == "classification" else \
        {"name": "d", "adapter": "mask_folder", "path": str(tmp_path), "images": "i", "masks": "m"}
    raw = {"name": "s", "output_dir": str(tmp_path / "out"), "backbones": [{"name": "dinov2_vits14"}],
           "datasets": [dataset], "protocols": [protocol]}
    return parse_study(raw, tmp_path).protocols[0].config


@pytest.mark.parametrize("preset, kind", [(p, k) for p, kinds in PRESETS.items() for k in kinds])
def test_a_preset_sets_exactly_its_keys(tmp_path, preset, kind):
    (tmp_path / "d.npz").write_bytes(b"")
    data_kind = "segmentation" if PROTOCOLS.get(kind).inputs == "segmentation" else "classification"
    plain = _entry(tmp_path, {kind: {}}, data_kind).model_dump()
    preset_config = _entry(tmp_path, {kind: {"preset": preset}}, data_kind).model_dump()
    documented = PRESETS[preset][kind]
    for key, value in preset_config.items():
        if key == "preset":
            assert value == preset
        elif key in documented:
            expected = documented[key]
            if isinstance(expected, dict):  # e.g. few_shot's head_config
                assert {k: value[k] for k in expected} == expected, key
            else:
                assert value == expected, key
        else:
            assert value == plain[key], f"{preset} changed {kind}.{key}, which it does not document"


def test_the_entry_wins_over_its_preset_and_bad_names_are_one_error_each(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    config = _entry(tmp_path, {"knn": {"preset": "foundation-medical", "k": [5]}})
    assert config.k == [5] and config.temperature == 0.1
    with pytest.raises(ConfigError, match=r"protocols\[0\]\.knn\.preset: unknown preset 'nope'; known: "):
        _entry(tmp_path, {"knn": {"preset": "nope"}})
    with pytest.raises(ConfigError, match="preset 'dino-cxr' has no defaults for knn"):
        _entry(tmp_path, {"knn": {"preset": "dino-cxr"}})


def test_the_readme_documents_every_preset():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, kinds in PRESETS.items():
        assert f"`{name}`" in readme
        for kind in kinds:
            assert kind in readme

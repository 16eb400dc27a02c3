"""Shared fixtures. Real data comes from ../shared/data through the `shared_data` fixture only: absent data
skips those tests on a user's clone, and fails them under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail hub look-ups at once, not after retries

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RADBENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
NIH_FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
    "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        message = f"real test data not found at {SHARED_DATA} (expected ../shared/data beside the repository)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; under CI=true this is a failure, not a skip")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def pneumonia_npz(shared_data: Path) -> Path:
    return shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz"


@pytest.fixture(scope="session")
def nih_labels(shared_data: Path) -> Path:
    return shared_data / "nih_chestxray14_images" / "labels.csv"


def write_study(folder: Path, study: dict, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def tiny_study(tmp_path: Path, datasets: list[dict], protocols: list[dict] | None = None, **settings) -> dict:
    """A fast study on timm's 306k-parameter test_vit at 32 px."""
    return {
        "name": "test",
        "output_dir": str(tmp_path / "out"),
        "seeds": [0],
        "image_size": 32,
        "batch_size": 128,
        "backbones": [{"name": "timm:test_vit", "weights": "none"}],
        "datasets": datasets,
        "protocols": protocols or [{"knn": {"k": [5, 10]}}, {"linear": {"epochs": 3, "lr": [0.01, 0.1]}},
                                   {"logreg": {"C": [0.1, 1.0]}}],
        **settings,
    }


def invoke_cli(*args):
    """The CLI in this process, as a user would call it (arguments as strings; exceptions not swallowed)."""
    from typer.testing import CliRunner

    from radbench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_cli(*args):
    """invoke_cli that must succeed: for module-scoped fixtures, which cannot take the `cli` fixture."""
    result = invoke_cli(*args)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def cli():
    return invoke_cli

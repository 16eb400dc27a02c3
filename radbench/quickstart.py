"""`radbench quickstart`: a real small study end to end (PneumoniaMNIST, DINOv2 ViT-S/14, kNN/linear/logreg)."""

from __future__ import annotations

from pathlib import Path

from radbench.config import StudyConfig, parse_study
from radbench.errors import RadbenchError

QUICKSTART_PROTOCOLS = [
    {"knn": {"k": [10, 20, 50]}},
    # z-scored inputs: the lr grid then fits any backbone's feature scale (random-init ones included)
    {"linear": {"epochs": 20, "lr": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1], "normalize": "standard"}},
    {"logreg": {"C": [0.01, 0.1, 1.0, 10.0]}},
]


def quickstart_study(output_dir: Path, data: Path | None, offline: bool, backbone: str, limit: int,
                     image_size: int, batch_size: int) -> StudyConfig:
    if data is not None:
        dataset = {"name": "pneumoniamnist", "adapter": "medmnist", "path": str(data), "limit": limit}
    else:
        local = Path.home() / ".medmnist" / "pneumoniamnist.npz"
        if offline and not local.exists():
            raise RadbenchError(
                f"--offline needs the data on disk: pass --data PATH to a PneumoniaMNIST npz (not found at {local})"
            )
        dataset = {"name": "pneumoniamnist", "adapter": "medmnist", "flag": "pneumoniamnist", "size": 28,
                   "limit": limit}
    raw = {
        "name": "quickstart",
        "output_dir": str(output_dir),
        "seeds": [0],
        "image_size": image_size,
        "batch_size": batch_size,
        "backbones": [{"name": backbone, "weights": "none" if offline else "hub"}],
        "datasets": [dataset],
        "protocols": QUICKSTART_PROTOCOLS,
    }
    return parse_study(raw, base_dir=Path.cwd(), source="quickstart")


def measured_cost() -> str:
    """The quickstart's cost as benchmarks/quickstart_time.py last measured it, for the banner."""
    import json

    try:
        timing = json.loads((Path(__file__).parent / "quickstart_timing.json").read_text())
    except (OSError, ValueError):
        return "cost not measured in this install"
    return (f"about {timing['cpu_minutes']:g} CPU-minutes, {timing['wall_minutes']:g} min wall on a {timing['cores']}-core "
            f"machine at load {timing['load_1min_before']:g} (benchmarks/quickstart_time.py, {timing['measured']})")


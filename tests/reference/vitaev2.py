"""Reference outputs of the official ViTAEv2 code, for tests/test_vitaev2.py.

The official code (github.com/ViTAE-Transformer/ViTAE-Transformer, folder Image-Classification/vitaev2) is not on
PyPI, so CI cannot import it. This script records, from that code, what the native model must reproduce: each
variant's state-dict layout (names and shapes, hashed) and parameter count, and its pooled features for seeded
weights and images (weights drawn with numpy per state-dict key, so any machine can redraw them). Regenerate with

    python -m tests.reference.vitaev2 /path/to/ViTAE-Transformer/Image-Classification

and, with VITAEV2_OFFICIAL set to that folder, tests/test_vitaev2.py also compares against the code itself."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).with_name("vitaev2_official.json")
VARIANTS = ("ViTAEv2_S", "ViTAEv2_48M", "ViTAEv2_B")
CASES = [("ViTAEv2_S", 64, 2), ("ViTAEv2_S", 224, 1), ("ViTAEv2_48M", 96, 1), ("ViTAEv2_B", 64, 1)]
IGNORED = ("relative_position_index",)  # constants of unused relative position bias (relative_pos=False)


def layout(state: dict) -> list[str]:
    return sorted(f"{key}:{tuple(value.shape)}" for key, value in state.items() if not key.endswith(IGNORED))


def layout_sha256(state: dict) -> str:
    return hashlib.sha256("\n".join(layout(state)).encode()).hexdigest()


def seeded_state(state: dict, seed: int = 0) -> dict:
    """Every floating tensor redrawn (BatchNorm statistics too, so eval-mode BN matters), each from its own name:
    the same values whatever other keys (a head, unused buffers) the model has."""
    import torch

    out = {}
    for key, value in state.items():
        if key.endswith(IGNORED) or not value.is_floating_point():
            out[key] = value
            continue
        rng = np.random.default_rng([seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)])
        draw = rng.standard_normal(tuple(value.shape)).astype(np.float32) * 0.05
        if key.endswith("running_var"):
            draw = np.abs(draw) + 0.5
        elif key.endswith(".weight") and value.ndim == 1:  # norm scales near 1
            draw = draw + 1.0
        out[key] = torch.from_numpy(draw)
    return out


def seeded_images(count: int, size: int, seed: int = 1):
    import torch

    return torch.from_numpy(np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32))


def official_features(source: Path, variant: str, size: int, count: int):
    """The official model's pooled features (its forward_features) on seeded weights and images."""
    import torch

    model = official_model(source, variant, size)
    model.load_state_dict(seeded_state(model.state_dict()), strict=True)
    with torch.no_grad():
        return model.forward_features(seeded_images(count, size))


def official_model(source: Path, variant: str, size: int):
    import warnings

    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    with warnings.catch_warnings():  # the official code imports timm's deprecated module paths
        warnings.simplefilter("ignore")
        from vitaev2 import ViTAEv2 as official

        return getattr(official, variant)(img_size=size).eval()


def main(source: str) -> None:
    root = Path(source)
    record = {"source": "github.com/ViTAE-Transformer/ViTAE-Transformer Image-Classification/vitaev2",
              "variants": {}, "features": []}
    for variant in VARIANTS:
        model = official_model(root, variant, 224)
        state = model.state_dict()
        head = sum(v.numel() for k, v in model.named_parameters() if k.startswith("head."))
        record["variants"][variant] = {"layout_sha256": layout_sha256(state), "tensors": len(layout(state)),
                                       "params_without_head": sum(p.numel() for p in model.parameters()) - head}
    for variant, size, count in CASES:
        features = official_features(root, variant, size, count)
        record["features"].append({"variant": variant, "size": size, "count": count,
                                   "values": [[float(f"{v:.7g}") for v in row] for row in features.tolist()]})
    REFERENCE.write_text(json.dumps(record) + "\n")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])

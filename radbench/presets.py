"""Seed-paper presets: `preset: <name>` on a protocol entry fills that paper's defaults for the keys the entry
does not set itself; radbench's own defaults stay as they are. The values are those of the papers' reference
code, as summarised in the project's protocol notes (shared/docs/protocol-notes.md)."""

from __future__ import annotations

DINOV2_LRS = [1e-3, 5e-3, 1e-2, 5e-2]  # the radiology fork's 4 lrs x last 1/4 blocks x avgpool = 16 linear heads

HUIX_LRS = [1e-5, 5e-5, 2e-4, 1e-3]  # "four values ranging from 1e-5 to 1e-3" (evenly spaced on a log scale)
# the paper names the jitter and "random resize crops", not their strengths: torchvision's usual values
HUIX_AUGMENT = {"crop_scale": (0.08, 1.0), "hflip": True, "vflip": True, "rotation": 0.0,  # crop: torchvision's default
                "color_jitter": (0.4, 0.4, 0.4, 0.1)}

PRESETS: dict[str, dict[str, dict]] = {
    # Baharoon et al., DINOv2 on radiology benchmarks (DINOv2ForRadiology)
    "dinov2-radiology": {
        "knn": {"k": [10, 20, 100, 200], "temperature": 0.07},
        "linear": {"lr": DINOV2_LRS, "last_blocks": [1, 4], "epochs": 10, "batch_size": 128, "momentum": 0.9,
                   "weight_decay": 0.0},
        "logreg": {"max_iter": 1000},
        "few_shot": {"shots": [1, 2, 4, 8, 16], "repeats": 1, "head": "linear",
                     "head_config": {"lr": DINOV2_LRS, "last_blocks": [1, 4], "epochs": 10}},
        "finetune": {"lr": [1e-5], "head_lr": 1e-3, "epochs": 10},
        "lora": {"lr": [1e-5], "head_lr": 1e-3, "epochs": 10, "rank": 48, "alpha": 16.0, "dropout": 0.1,
                 "target_modules": ["qkv", "fc1", "fc2"]},
        "bitfit": {"lr": [1e-5], "head_lr": 1e-3, "epochs": 10},
        "segmentation": {"lr": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1], "image_size": 448},
    },
    # Huix et al., "Are natural domain foundation models useful for medical image classification?": AdamW with a
    # linear warmup, four base lrs from 1e-5 to 1e-3 searched, lr / 10 when the val metric saturates, weight decay
    # 1e-5, the best val checkpoint tested (no refit); flips both ways, colour jitter, random resized crops
    "foundation-medical": {
        "knn": {"k": [200], "temperature": 0.1},
        "finetune": {"lr": HUIX_LRS, "head_lr": 1e-4, "weight_decay": 1e-5, "batch_size": 64, "epochs": 100,
                     "grad_clip": 1.0, "schedule": "plateau", "refit": False, "augment": HUIX_AUGMENT},
        "progressive_freezing": {"lr": HUIX_LRS, "head_lr": 1e-4, "weight_decay": 1e-5, "batch_size": 64,
                                 "epochs": 100, "grad_clip": 1.0, "schedule": "plateau", "refit": False,
                                 "augment": HUIX_AUGMENT},
        "transformer_head": {"lr": HUIX_LRS, "weight_decay": 1e-5, "batch_size": 64, "epochs": 100,
                             "schedule": "plateau", "refit": False},
        "decapitation": {"head": "linear"},
    },
    # DINO-CXR: SGD fine-tuning with the lr from a grid search, batch 512
    "dino-cxr": {
        "linear": {"lr": [1e-3, 1e-2, 1e-1], "batch_size": 512, "momentum": 0.9},
        "finetune": {"lr": [1e-5, 1e-4], "batch_size": 512, "optimizer": "sgd", "momentum": 0.9},
    },
}


def apply_preset(kind: str, body: dict) -> dict:
    """The entry's keys over the preset's for this protocol type; the preset's name stays in the config (and so in
    every job's key and record). Raises ValueError with what to write instead."""
    name = body.get("preset")
    if name is None:
        return body
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    if kind not in PRESETS[name]:
        raise ValueError(f"preset {name!r} has no defaults for {kind}; it covers {', '.join(PRESETS[name])}")
    return {**PRESETS[name][kind], **body}

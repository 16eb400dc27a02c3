"""Optional dependencies: heavy or specialised stacks live in pip extras, and what a study needs from them is
checked by `plan` and at the start of `run` (one line naming the extra) instead of failing mid-run.

    pip install "radbench[hf]"        # Hugging Face transformers models (hf:..., rad_dino, medsiglip, ...)
    pip install "radbench[openclip]"  # open_clip towers (open_clip:..., biomedclip)
    pip install "radbench[xrv]"       # torchxrayvision CXR baselines
    pip install "radbench[lora]"      # the lora protocol (peft)
    pip install "radbench[seg]"       # decoder: scratch_unet (MONAI's U-Net)
    pip install "radbench[pretrain]"  # radbench pretrain (lightly)
    pip install "radbench[slurm]"     # --executor slurm / submitit-local (submitit)
    pip install "radbench[ray]"       # --executor ray
    pip install "radbench[all]"       # everything above"""

from __future__ import annotations

import importlib.util

from radbench.errors import ConfigError

EXTRAS = {  # extra -> (module it provides, pip distribution)
    "hf": ("transformers", "transformers"),
    "openclip": ("open_clip", "open_clip_torch"),
    "xrv": ("torchxrayvision", "torchxrayvision"),
    "lora": ("peft", "peft"),
    "seg": ("monai", "monai"),
    "pretrain": ("lightly", "lightly"),
    "slurm": ("submitit", "submitit"),
    "ray": ("ray", "ray"),
    "mlflow": ("mlflow", "mlflow"),
}
FAMILY_EXTRAS = {"hf": "hf", "open_clip": "openclip", "xrv": "xrv"}


def installed(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra][0]) is not None  # finds it without importing it


def require(extra: str, what: str) -> None:
    """One line when `extra` is not installed: what needs it and the pip command."""
    if not installed(extra):
        module, distribution = EXTRAS[extra]
        raise ConfigError(f"{what} needs {distribution}, which is not installed: pip install \"radbench[{extra}]\" "
                          f"(or pip install {distribution})")


def study_needs(study) -> list[tuple[str, str]]:
    """(extra, what needs it) for every optional dependency the study uses."""
    from radbench.backbones import resolve_entry

    needs = []
    for backbone in study.backbones:
        family = resolve_entry(backbone.name).family
        if family in FAMILY_EXTRAS:
            needs.append((FAMILY_EXTRAS[family], f"backbone {backbone.display_name} ({family} family)"))
    for entry in study.protocols:
        if entry.type == "lora":
            needs.append(("lora", f"protocol {entry.label}"))
        if getattr(entry.config, "decoder", None) == "scratch_unet":
            needs.append(("seg", f"protocol {entry.label} (decoder: scratch_unet)"))
    return needs


def check_study(study) -> None:
    """Every optional dependency the study needs is installed, or one line per missing one (all at once), and one
    pip command installing every missing extra."""
    lines, missing = [], []
    for extra, what in study_needs(study):
        try:
            require(extra, what)
        except ConfigError as error:
            lines.append(str(error))
            missing.append(extra)
    if lines:
        extras = ",".join(dict.fromkeys(missing))
        every = [f"all of them at once: pip install \"radbench[{extras}]\""] if len(set(missing)) > 1 else []
        raise ConfigError("\n".join([*dict.fromkeys(lines), *every]))

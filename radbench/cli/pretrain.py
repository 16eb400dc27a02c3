"""`radbench pretrain`: self-supervised pretraining on unlabelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radbench.cli.common import DATA_ROOT, DEVICE, IMAGE_SIZE, OUTPUT_DIR, QUIET, WEIGHTS, app, err, user_errors


@app.command()
@user_errors
def pretrain(
    config: Path = typer.Argument(..., help="pretraining YAML"),
    device: Optional[str] = DEVICE,
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="stop after step N (schedules unchanged)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="instead of the config's batch_size"),
    quiet: bool = QUIET,
    data_root: Optional[Path] = DATA_ROOT, output_dir: Optional[Path] = OUTPUT_DIR,
    backbone: Optional[str] = typer.Option(None, "--backbone", help="instead of the config's backbone"),
    weights: Optional[str] = WEIGHTS, image_size: Optional[int] = IMAGE_SIZE,
):
    """Self-supervised pretraining (DINO / DINOv2-style) on unlabelled images; a rerun resumes from the last
    checkpoint. Saved teachers land in OUT/checkpoints/step<N>/ and load in any study as `weights:`."""
    import os

    from radbench.pretrain.config import load_pretrain
    from radbench.progress import Reporter

    if data_root is not None:
        os.environ["RADBENCH_DATA"] = str(Path(data_root).resolve())
    updates = {k: v for k, v in (("device", device), ("batch_size", batch_size), ("image_size", image_size),
                                 ("output_dir", str(output_dir.resolve()) if output_dir else None)) if v is not None}
    if backbone or weights:
        updates["backbone"] = {k: v for k, v in (("name", backbone), ("weights", weights)) if v}
    parsed = load_pretrain(config, updates)  # a config error is one line before torch is imported
    from radbench.extras import require

    require("pretrain", "radbench pretrain")
    from radbench.pretrain.loop import run_pretraining

    done = run_pretraining(parsed, Reporter(err, quiet=quiet), max_steps=max_steps)
    err.print(f"pretraining: {done.steps_run} steps run (now at step {done.last_step} of {done.total_steps}) "
              f"in {done.seconds:.0f} s; teachers in {parsed.config.output_dir / 'checkpoints'}")

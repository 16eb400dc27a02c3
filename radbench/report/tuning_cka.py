"""What fine-tuning changed, block by block (Huix et al., Figs 7-8): linear CKA between every block of a backbone
before fine-tuning (its pretrained weights) and every block after (the model a training protocol saved with
`save_model: true`), on a few test images. A diagonal near 1 means a block kept its representation; a low one,
that fine-tuning rewrote it.

Like the PCA maps, this runs the two backbones (on the CPU, no training) on `count` test images, rebuilt from the
configuration stored with the job and the saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.report.cka import linear_cka

TUNED = ("finetune", "lora", "bitfit", "progressive_freezing")


def block_tokens(backbone, images: list[np.ndarray], preprocess) -> list[np.ndarray]:
    """The CLS token after every block (normed, as the feature cache keeps them): one (images, dim) array each."""
    import torch

    layout = backbone.layout(backbone.depth)
    batch = torch.stack([preprocess(image) for image in images])
    backbone.model.eval()
    with torch.no_grad():
        bundle = backbone.forward_bundle(batch, layout).float().numpy()
    return [bundle[:, block * layout.dim:(block + 1) * layout.dim] for block in range(layout.n_last)]


def before_after(config: dict, saved: Path, images: list[np.ndarray]) -> pd.DataFrame:
    """Block (before, rows) x block (after, columns) linear CKA of one saved fine-tuned backbone."""
    from radbench.backbones import build_backbone
    from radbench.backbones.base import BackboneConfig
    from radbench.data.transforms import Preprocess

    fields = {k: v for k, v in config["backbone"].items() if k in BackboneConfig.model_fields}
    preprocess = Preprocess.from_identity(config["preprocess"])
    usage = json.loads((saved / "model.json").read_text())["use_as_backbone"]
    before = build_backbone(BackboneConfig(**fields), preprocess.image_size)
    if before.layout_kind != "tokens" or not before.depth:
        return pd.DataFrame()
    after = build_backbone(BackboneConfig(**{k: v for k, v in usage.items() if k != "label"}), preprocess.image_size)
    first, second = block_tokens(before, images, preprocess), block_tokens(after, images, preprocess)
    names = [f"block{b + 1}" for b in range(len(first))]
    matrix = np.array([[linear_cka(x, y) for y in second] for x in first])
    return pd.DataFrame(matrix, index=pd.Index(names, name="before"), columns=pd.Index(names, name="after"))


def tuned_jobs(jobs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The first stored run of each backbone x training protocol on `dataset` that saved its model."""
    rows = []
    for job in jobs[(jobs.dataset == dataset) & jobs.protocol_type.isin(TUNED)].sort_values(["seed", "repeat"])\
            .itertuples():
        saved = json.loads(job.details).get("saved_model") if isinstance(job.details, str) else None
        if saved and (Path(saved) / "model.json").is_file():
            rows.append({"backbone": job.backbone, "protocol": job.protocol, "config": job.config, "saved": saved})
    return pd.DataFrame(rows).drop_duplicates(["backbone", "protocol"]) if rows else pd.DataFrame()


def section(page, section_, results, dataset: str, count: int, tables: Path, warn=print) -> None:
    """Figures (and tables `cka-tuning-<dataset>-<backbone>-<protocol>`) for every saved fine-tuned backbone."""
    from radbench.report import plots
    from radbench.report.patches import _test_images
    from radbench.report.tables import write_table

    if count <= 0:
        return
    tuned = tuned_jobs(results.store.jobs(), dataset)
    if tuned.empty:
        return
    try:
        images = _test_images(json.loads(tuned.config.iloc[0]), count)
    except Exception as error:  # the data moved since the run: the rest of the report still renders
        warn(f"CKA before / after fine-tuning on {dataset} skipped: its test images cannot be read ({error})")
        return
    if not images or len(images) < 4:
        return
    for job in tuned.itertuples():
        try:
            matrix = before_after(json.loads(job.config), Path(job.saved), images)
        except Exception as error:  # hub weights offline, a moved model folder: the rest still renders
            warn(f"CKA before / after fine-tuning: {job.backbone} {job.protocol} on {dataset} skipped "
                 f"({type(error).__name__}: {error})")
            continue
        if matrix.empty:
            continue
        name = f"cka-tuning-{dataset}-{job.backbone}-{job.protocol}"
        write_table(matrix.reset_index(), tables, name)
        page.figure(section_, plots.cka_heatmap(matrix, f"{dataset}: {job.backbone}, before (rows) vs after "
                                                         f"{job.protocol} (columns)"), name,
                    f"{dataset} {job.backbone} CKA before / after {job.protocol}",
                    f"Linear CKA between the CLS token of each block before fine-tuning and after ({len(images)} test "
                    "images; the first run that saved its model). Near 1 on the diagonal: the block kept its "
                    "representation.")

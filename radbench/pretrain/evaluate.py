"""`evaluate: {study: eval.yaml}`: the study run on every saved teacher, into the pretraining run's own results store
(OUT/results.sqlite). Each checkpoint is a backbone labelled `<name>@step<N>`, so `radbench report OUT` draws
the pretraining curve (downstream metric vs step). Finished jobs are skipped, so re-evaluating is cheap."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from radbench.backbones import BackboneConfig
from radbench.pretrain.config import PretrainConfig
from radbench.progress import Reporter

STEP_LABEL = re.compile(r"^(?P<run>.+)@step(?P<step>\d+)$")


def checkpoint_label(run_name: str, step: int) -> str:
    return f"{run_name}@step{step}"


def evaluation_study(cfg: PretrainConfig, checkpoints: list[tuple[int, Path]]):
    from radbench.config import load_study

    study = load_study(cfg.evaluate.study)
    backbones = [BackboneConfig(name=cfg.backbone.name, weights=str(path), label=checkpoint_label(cfg.name, step),
                                model_kwargs=cfg.backbone.model_kwargs) for step, path in checkpoints]
    settings = study.settings.model_copy(update={"output_dir": cfg.output_dir})
    return dataclasses.replace(study, backbones=backbones, settings=settings)


def evaluate_checkpoints(cfg: PretrainConfig, checkpoints: list[tuple[int, Path]], reporter: Reporter) -> None:
    if not checkpoints or cfg.evaluate is None:
        return
    from radbench.runner import run_study

    reporter.info(f"evaluating {len(checkpoints)} checkpoint(s) with {cfg.evaluate.study}")
    run_study(evaluation_study(cfg, checkpoints), reporter)

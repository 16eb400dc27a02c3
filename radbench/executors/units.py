"""The unit of work an executor hands to a worker: one backbone x dataset (its extraction, then every job that reads
those features or trains that backbone on that dataset). A worker runs it with the ordinary runner, writing
shard files (results/shards.py) instead of the shared store."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass

from radbench.config import StudyConfig


@dataclass(frozen=True)
class Unit:
    backbone: str  # the backbone's display label
    dataset: str

    @property
    def key(self) -> str:
        return f"unit:{self.backbone}|{self.dataset}"

    def __str__(self) -> str:
        return f"{self.backbone} x {self.dataset}"


def study_units(study: StudyConfig) -> list[Unit]:
    return [Unit(b.display_name, d.name) for b in study.backbones for d in study.datasets]


def unit_study(study: StudyConfig, unit: Unit) -> StudyConfig:
    """The study narrowed to one unit (same settings, so the same job keys and caches)."""
    backbones = [b for b in study.backbones if b.display_name == unit.backbone]
    datasets = [d for d in study.datasets if d.name == unit.dataset]
    return dataclasses.replace(study, backbones=backbones, datasets=datasets)


def run_unit(study: StudyConfig, unit: Unit, threads: int | None = None) -> dict:
    """A worker's entry point (Ray task, submitit job): run the unit, results into shard files. `threads`: the
    CPUs the engine gave the unit (torch would otherwise use every core of the node, or Ray's default of one)."""
    import torch

    from radbench.progress import Reporter
    from radbench.results.shards import ShardWriter
    from radbench.runner import run_study

    if threads:
        torch.set_num_threads(threads)
    summary = run_study(unit_study(study, unit), Reporter(quiet=True),
                        store=ShardWriter(study.settings.output_dir))
    return {"unit": str(unit), "jobs_run": summary.jobs_run, "jobs_skipped": summary.jobs_skipped,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}

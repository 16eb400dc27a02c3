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
    """One backbone x dataset and which of its jobs: `all`, `features` (the extraction and every job reading the
    cached features), or one training protocol's label with one `seed` (a job that trains a model is its own
    unit: these dominate a study's GPU time)."""

    backbone: str  # the backbone's display label
    dataset: str
    part: str = "all"
    seed: int | None = None

    @property
    def key(self) -> str:
        return f"unit:{self.backbone}|{self.dataset}|{self.part}|{self.seed}"

    def __str__(self) -> str:
        what = "" if self.part == "all" else f" {self.part}" + ("" if self.seed is None else f" seed {self.seed}")
        return f"{self.backbone} x {self.dataset}{what}"

    def covers(self, backbone: str, dataset: str) -> bool:
        return (backbone, dataset) == (self.backbone, self.dataset)

    def takes(self, job) -> bool:
        if self.part == "all":
            return True
        if self.part == "features":
            return job.uses_features
        return not job.uses_features and job.entry.label == self.part and self.seed in (None, job.seed)


def study_units(study: StudyConfig) -> list[Unit]:
    from radbench.data import ADAPTERS
    from radbench.protocols import PROTOCOLS

    units = []
    for backbone in study.backbones:
        for dataset in study.datasets:
            if getattr(dataset, "external_only", False):
                continue  # scored by the other units' jobs, never a unit of its own
            segmentation = ADAPTERS.get(dataset.adapter).kind == "segmentation"
            entries = [e for e in study.protocols if (PROTOCOLS.get(e.type).inputs == "segmentation") == segmentation
                       and e.runs_on(backbone) and e.runs_on_dataset(dataset.name)]
            reads_features = {e.label: "features" in PROTOCOLS.get(e.type).inputs.split("+") for e in entries}
            if any(reads_features.values()):
                units.append(Unit(backbone.display_name, dataset.name, "features"))
            units += [Unit(backbone.display_name, dataset.name, e.label, seed) for e in entries
                      if not reads_features[e.label] for seed in study.settings.seeds]
    return units


def unit_study(study: StudyConfig, unit: Unit) -> StudyConfig:
    """The study focused on one unit: the same settings, backbones and protocols (so the same job keys and
    caches), running only the unit's backbone x dataset and jobs."""
    return dataclasses.replace(study, focus=unit)


def run_unit(study: StudyConfig, unit: Unit, threads: int | None = None) -> dict:
    """A worker's entry point (Ray task, submitit job): run the unit, results into shard files. `threads`: the
    CPUs the engine gave the unit (torch would otherwise use every core of the node, or Ray's default of one)."""
    import torch

    from radbench.progress import Reporter
    from radbench.results.shards import ShardWriter
    from radbench.runner import run_study

    if threads:
        torch.set_num_threads(threads)
    summary = run_study(unit_study(study, unit), Reporter(quiet=True),  # a failure fails the unit: the driver retries
                        store=ShardWriter(study.settings.output_dir), fail_fast=True)
    return {"unit": str(unit), "jobs_run": summary.jobs_run, "jobs_skipped": summary.jobs_skipped,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}

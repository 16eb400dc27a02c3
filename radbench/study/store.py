"""Store: where a run's records go, chosen once — the study's SQLite file, or shard files (an executor's worker;
every rank under torchrun, merged by rank 0 at the end). The run sees one interface: claims, the plan, records,
failures."""

from __future__ import annotations

from contextlib import AbstractContextManager

from radbench.distributed import Ranks
from radbench.results import JobRecord, ResultsStore
from radbench.results.shards import ShardWriter, merge_shards
from radbench.results.store import check_store_file


def results_path(study):
    return study.settings.output_dir / "results.sqlite"


def check_study_store(study) -> None:
    """A foreign or damaged store: refused before anything is written."""
    check_store_file(results_path(study))


class StudyStore:
    def __init__(self, study, ranks: Ranks, writer: ResultsStore | ShardWriter | None = None):
        self.study, self.ranks = study, ranks
        if ranks.world > 1:  # ranks may sit on several nodes: they write shards, rank 0 merges them at the end
            writer = ShardWriter(study.settings.output_dir)
        self.writer = writer or ResultsStore(results_path(study))
        # the plan of the whole study is written once: by rank 0 of a local run (a worker's driver wrote it)
        self.planner = (self.writer.main if isinstance(self.writer, ShardWriter) else self.writer) \
            if study.focus is None and ranks.main else None

    # claims among processes sharing the output folder
    def heartbeat(self) -> AbstractContextManager:
        return self.writer.heartbeat()

    def claim(self, key: str) -> bool:
        return self.writer.claim(key)

    def release(self, key: str) -> None:
        self.writer.release(key)

    def claim_holder(self, key: str) -> str | None:
        return self.writer.claim_holder(key)

    # the plan and what is done
    def plan_units(self, units: list[tuple[str, str]]) -> None:
        if self.planner is not None:
            self.planner.plan_units(self.study.settings.name, units)
            settings = self.study.settings
            self.planner.record_study_notes(settings.name, settings.references, settings.deviations,
                                            settings.cost_baseline)

    def plan_jobs(self, backbone: str, dataset: str, jobs: list) -> None:
        self.writer.plan_jobs(backbone, dataset, [(job.key, job.label, job.seed, job.repeat) for job in jobs])

    def finished_keys(self) -> set[str]:
        return self.writer.finished_keys()

    def stored_runs(self) -> set[tuple]:
        """(backbone, dataset, protocol, seed, repeat) of every stored job: a rough count of what is done before a
        unit's data is read (its job keys need the data)."""
        store = getattr(self.writer, "main", self.writer)
        try:
            jobs = store.jobs()
        except Exception:  # a store without jobs yet, or unreadable here: nothing known to be done
            return set()
        return set(zip(jobs.backbone, jobs.dataset, jobs.protocol, jobs.seed.astype(int), jobs.repeat.astype(int)))

    def record_groups(self, datasets: dict) -> None:
        """Every dataset's subgroup values, once per run (by the main process)."""
        if not self.ranks.main:
            return
        for name, dataset in datasets.items():
            for split in dataset.splits.values():
                if getattr(split, "groups", None):
                    self.writer.save_groups(name, split.sample_ids, split.groups)

    # records and failures
    def save(self, record: JobRecord) -> bool:
        return self.writer.save(record)

    def record_failure(self, unit, job, line: str) -> None:
        backbone, dataset = unit.names  # the unit's (a scratch U-Net's job is planned under the first backbone)
        self.writer.record_failure(job.key, backbone=backbone, dataset=dataset, protocol=job.label, seed=job.seed,
                                   repeat=job.repeat, error=line)

    def clear_unit_failures(self, backbone: str, dataset: str) -> None:
        self.writer.clear_unit_failures(backbone, dataset, None if self.study.focus is None else self.study.focus.key)

    def finish(self) -> None:
        if self.ranks.world > 1 and self.ranks.main:
            merge_shards(self.study.settings.output_dir)

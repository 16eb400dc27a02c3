"""`radbench.load(OUT)`: a results folder as pandas DataFrames, and the report's statistics for notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.data.base import Task
from radbench.errors import RadbenchError
from radbench.report import stats
from radbench.results import metric_rows, predictions
from radbench.results.tables import COST_METRICS

JSON_COLUMNS = ("config", "selected", "candidates", "details", "timings")


class Results:
    """r.results (one row per test metric), r.predictions (per-sample scores), r.samples (segmentation cases),
    r.costs, r.jobs (configs), r.status (planned / stored / failed jobs); r.bootstrap(job), r.compare(job_a, job_b,
    metric), r.cka(dataset[, backbone]), r.leaderboard(), r.clinical(dataset), r.failures(dataset),
    r.error_agreement(dataset)."""

    def __init__(self, output_dir: str | Path):
        from radbench.results.shards import open_results

        self.store = open_results(output_dir)

    @property
    def jobs(self) -> pd.DataFrame:
        """One row per stored job: key, backbone, dataset, protocol, seed, repeat, task, and its config, selected
        hyperparameters, candidates, details and timings as Python objects (parsed from the stored JSON)."""
        jobs = self.store.jobs()
        for column in JSON_COLUMNS:
            jobs[column] = [json.loads(value) if isinstance(value, str) else value for value in jobs[column]]
        return jobs

    def __repr__(self) -> str:
        status = self.store.status()
        jobs = self.store.jobs()
        return (f"<radbench results {self.store.path.parent}: {len(jobs)} jobs stored of {int(status.planned.sum())} "
                f"planned ({int(status.failed.sum())} failed); {jobs.backbone.nunique()} backbone(s) x "
                f"{jobs.dataset.nunique()} dataset(s) x {jobs.protocol.nunique()} protocol(s); r.results, "
                "r.predictions, r.leaderboard(), r.status>")

    def _repr_html_(self) -> str:
        from html import escape

        from radbench.results import summary

        table = summary(self.store)
        shown = [c for c in ("backbone", "dataset", "protocol", "runs", "auroc", "accuracy", "dice") if c in table]
        return f"<p>{escape(repr(self))}</p>" + table[shown].to_html(index=False, float_format="%.4f", na_rep="")

    @property
    def results(self) -> pd.DataFrame:
        rows = metric_rows(self.store)
        return rows[~rows.metric.isin(COST_METRICS)].reset_index(drop=True)

    @property
    def status(self) -> pd.DataFrame:
        return self.store.status()

    @property
    def costs(self) -> pd.DataFrame:
        rows = metric_rows(self.store)
        return rows[rows.metric.isin(COST_METRICS)].reset_index(drop=True)

    @property
    def predictions(self) -> pd.DataFrame:
        return predictions(self.store)

    @property
    def samples(self) -> pd.DataFrame:
        return self.store.sample_metrics()

    def _scored(self, job: str):
        _, _, targets, scores = self.store.predictions(job)
        task = Task(self.store.jobs().set_index("key").loc[job, "task"])
        return task, targets, scores, np.array(self.store.patient_ids(job))

    def bootstrap(self, job: str, resamples: int = 1000, seed: int = 0) -> dict[str, stats.Interval]:
        """95 % patient-level bootstrap intervals of one job's test metrics."""
        task, targets, scores, patients = self._scored(job)
        return stats.bootstrap(task, targets, scores, patients, resamples, seed)

    def compare(self, job_a: str, job_b: str, metric: str = "auroc", resamples: int = 1000, seed: int = 0) -> float:
        """Two-sided p-value of the difference between two jobs on the same test samples: DeLong for binary AUROC,
        the paired patient bootstrap otherwise."""
        task, targets, scores_a, patients = self._scored(job_a)
        _, targets_b, scores_b, _ = self._scored(job_b)
        if targets.shape != targets_b.shape or not np.array_equal(np.nan_to_num(targets, nan=-1),
                                                                    np.nan_to_num(targets_b, nan=-1)):
            raise RadbenchError(f"jobs {job_a} and {job_b} were not tested on the same samples")
        if metric == "auroc" and task is Task.BINARY:
            return stats.delong(targets.argmax(1), scores_a[:, 1], scores_b[:, 1])[2]
        return stats.paired_bootstrap(task, targets, scores_a, scores_b, patients, metric, resamples, seed)

    def cka(self, dataset: str, backbone: str | None = None, feature: str = "cls",
            unbiased: bool = False) -> pd.DataFrame:
        """Linear CKA on `dataset`'s cached test features: backbone x backbone, or, given `backbone`, block x block
        of that backbone's cached blocks."""
        from radbench.report.cka import backbone_cka, layer_cka

        folder = self.store.path.parent
        if backbone is not None:
            return layer_cka(folder, backbone, dataset, unbiased)
        return backbone_cka(folder, dataset, feature, unbiased)

    def clinical(self, dataset: str, seed: int = 0) -> pd.DataFrame:
        """Operating points and calibration of `dataset`'s classification jobs (macro and per class), each the
        mean over runs with its two-level 95 % interval: the report's clinical table."""
        from radbench.report.clinical import clinical_rows

        jobs = self.store.jobs()
        return clinical_rows(self.store, jobs[jobs.dataset == dataset], seed)

    def failures(self, dataset: str, protocol: str | None = None, top: int = 5) -> pd.DataFrame:
        """The test cases each backbone gets most confidently wrong on `dataset` (single-label), with `protocol`'s
        scores averaged over runs (default: the protocol the report shows, see report/failures.py)."""
        from radbench.report.failures import case_outcomes, most_confident_errors

        rows = predictions(self.store, dataset=dataset)
        return most_confident_errors(case_outcomes(rows, dataset, self._failure_protocol(rows, dataset, protocol)),
                                     top)

    def error_agreement(self, dataset: str, protocol: str | None = None) -> tuple[pd.DataFrame, dict]:
        """Whether the backbones fail on the same cases: per pair both / only one wrong, Cohen's kappa of their
        errors, McNemar's exact p (test cases only); and how many cases every backbone gets wrong."""
        from radbench.report.failures import case_outcomes, error_agreement

        rows = predictions(self.store, dataset=dataset)
        return error_agreement(case_outcomes(rows, dataset, self._failure_protocol(rows, dataset, protocol)))

    def neighbours(self, dataset: str, cases: list[str], k: int = 4, protocol: str | None = None) -> pd.DataFrame:
        """For test cases of `dataset`: their `k` most similar train / val images under each backbone's cached
        features, as `protocol`'s job read them (default: the failure section's protocol) — backbone, case, rank,
        split, sample_id, label, similarity (what the report's nearest-images figure shows)."""
        import json

        from radbench.report.failure_images import loaded_dataset, nearest_cases

        jobs = self.store.jobs()
        jobs = jobs[jobs.dataset == dataset]
        if jobs.empty:
            raise RadbenchError(f"no stored job for dataset {dataset!r}")
        rows = predictions(self.store, dataset=dataset)
        chosen = protocol or (self._failure_protocol(rows, dataset, None) if not rows.empty else jobs.protocol.iloc[0])
        data = loaded_dataset(json.loads(jobs.config.iloc[0]))
        if data is None:
            raise RadbenchError(f"dataset {dataset!r}: its images cannot be read again (3D, or not recorded)")
        return nearest_cases(self.store.path.parent, dataset, data, jobs[jobs.protocol == chosen],
                             [str(c) for c in cases], k)

    @staticmethod
    def _failure_protocol(rows: pd.DataFrame, dataset: str, protocol: str | None) -> str:
        from radbench.report.failures import default_protocol

        chosen = protocol or (default_protocol(rows, dataset) if not rows.empty else None)
        if chosen is None:
            raise RadbenchError(f"no stored single-label test predictions for dataset {dataset!r}")
        return chosen

    def answer(self, resamples: int = 1000, seed: int = 0) -> list[str]:
        """The page's first section: per dataset the recommended backbone x protocol, the margin to the runner-up
        and the leaderboard's verdict, or why nothing can be told (report/answer.py)."""
        from radbench.report.answer import answer, headline_metrics

        board = self.leaderboard(resamples, seed)
        return answer(board, headline_metrics(board))

    def leaderboard(self, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per backbone x dataset x protocol x metric: the mean over runs, its run-aware 95 % interval,
        the rank and the verdict against the best backbone (the report's leaderboard)."""
        from radbench.report.leaderboard import leaderboard

        return leaderboard(self.store, resamples, seed)


def load(output_dir: str | Path) -> Results:
    return Results(output_dir)

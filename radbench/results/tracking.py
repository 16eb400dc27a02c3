"""`--track mlflow[:URI]`: each stored job becomes an MLflow run — params (backbone, dataset, protocol, seed, the
chosen hyperparameters, the weights' identity), metrics (val_* and test_*, costs), tags (study, job key) — and
`radbench report --track` attaches the page as an artifact. The store stays the record: a sync logs every stored job
that the tracking server does not hold yet (found by its job-key tag), so a rerun logs nothing twice and jobs stored
before tracking was turned on are logged too. Default: OUT/mlruns/ — an SQLite store (mlflow.db) with its
artifacts beside it; MLflow 3 refuses its old plain-file store unless told otherwise, so that is not used."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

from radbench.errors import ConfigError

KEY_TAG = "radbench.job_key"
KIND_TAG = "radbench.kind"
_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")  # MLflow's allowed characters in metric and param names


def parse_track(value: str | None) -> str | None:
    """`mlflow` or `mlflow:URI` -> the URI ("" for the default); None when not tracking."""
    if value is None:
        return None
    kind, _, uri = value.partition(":")
    if kind != "mlflow":
        raise ConfigError(f"--track {value!r}: give mlflow or mlflow:URI (e.g. mlflow:http://localhost:5000)")
    return uri


class MlflowTracker:
    def __init__(self, uri: str, output_dir: Path, study: str):
        from radbench.extras import require

        require("mlflow", "--track mlflow")
        self.local = None if uri else Path(output_dir).resolve() / "mlruns"
        self.uri = uri or f"sqlite:///{self.local / 'mlflow.db'}"
        self.study = study
        self._client = None
        self._experiment = None

    def check(self) -> None:
        """An unreachable server: one line, before any model is built."""
        if not self.uri.startswith(("http://", "https://")):
            return
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=5) as answer:
                answer.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ConfigError(f"--track: the MLflow tracking server at {self.uri} cannot be reached ({reason}); "
                              "start it, fix the URI, or pass --track-optional to run without tracking") from None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.local is not None:
                self.local.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri)
            found = self._client.get_experiment_by_name(self.study)
            artifacts = {"artifact_location": (self.local / "artifacts").as_uri()} if self.local is not None else {}
            self._experiment = found.experiment_id if found else self._client.create_experiment(self.study,
                                                                                                 **artifacts)
        return self._client

    def logged_keys(self) -> set[str]:
        runs = self.client.search_runs([self._experiment], filter_string=f"tags.`{KIND_TAG}` = 'job'",
                                       max_results=50_000)
        return {run.data.tags.get(KEY_TAG) for run in runs}

    def sync(self, store) -> int:
        """Log every stored job not logged yet; the number logged."""
        jobs = store.jobs()
        if jobs.empty:
            return 0
        done = self.logged_keys()
        todo = jobs[~jobs.key.isin(done)]
        if todo.empty:
            return 0
        values: dict[str, dict] = {}
        for split in ("val", "test"):
            frame = store.metrics(split)
            for key, metric, value in zip(frame.job, frame.metric, frame.value):
                values.setdefault(key, {})[f"{split}_{metric}"] = value
        for job in todo.itertuples():
            self._log_job(job, values.get(job.key, {}))
        return len(todo)

    def _log_job(self, job, values: dict) -> None:
        from mlflow.entities import Metric, Param

        config = json.loads(job.config)
        selected = json.loads(job.selected)
        params = {"backbone": job.backbone, "dataset": job.dataset, "protocol": job.protocol,
                  "protocol_type": job.protocol_type, "seed": job.seed, "repeat": job.repeat, "task": job.task,
                  "weights": json.dumps(config.get("backbone", {}).get("identity", {}), sort_keys=True)[:5000],
                  **{f"selected.{k}": v for k, v in selected.items()}}
        tags = {KEY_TAG: job.key, KIND_TAG: "job", "radbench.study": job.study, "mlflow.runName":
                f"{job.backbone} / {job.dataset} / {job.protocol} / seed {job.seed}"
                + (f" / repeat {job.repeat}" if job.repeat else "")}
        run = self.client.create_run(self._experiment, tags=tags)
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(_safe(name), float(value), 0, 0) for name, value in values.items()
                     if value is not None and math.isfinite(value)],
            params=[Param(_safe(name), str(value)[:6000]) for name, value in params.items()],
            tags=[])
        self.client.set_terminated(run.info.run_id)

    def log_report(self, folder: Path) -> str:
        """The page and its tables as artifacts of the study's report run (one run, updated each time)."""
        runs = self.client.search_runs([self._experiment], filter_string=f"tags.`{KIND_TAG}` = 'report'")
        run_id = runs[0].info.run_id if runs else self.client.create_run(
            self._experiment, tags={KIND_TAG: "report", "mlflow.runName": f"{self.study} report"}).info.run_id
        self.client.log_artifact(run_id, str(Path(folder) / "index.html"))
        if (Path(folder) / "tables").is_dir():
            self.client.log_artifacts(run_id, str(Path(folder) / "tables"), artifact_path="tables")
        self.client.set_terminated(run_id)
        return run_id


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def tracker_for(track: str | None, optional: bool, output_dir: Path, study: str, warn) -> MlflowTracker | None:
    """The tracker the CLI's --track asks for, checked; with --track-optional a problem is a warning and no tracking."""
    uri = parse_track(track)
    if uri is None:
        return None
    try:
        tracker = MlflowTracker(uri, output_dir, study)
        tracker.check()
        return tracker
    except ConfigError as error:
        if not optional:
            raise
        warn(f"{error} — running without tracking (--track-optional)")
        return None

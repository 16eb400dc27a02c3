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
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from radbench.errors import ConfigError, RadbenchError

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
        """Before any model is built: the URI is one MLflow can store runs at, and it answers — one line else."""
        uri = self.uri
        scheme = _scheme(uri)
        if scheme in ("", "file"):
            raise ConfigError(f"--track mlflow:{uri}: a plain folder is MLflow's file store, which MLflow 3 refuses; "
                              "give mlflow (a local SQLite store in OUT/mlruns), mlflow:sqlite:///PATH/mlflow.db or "
                              "a server, mlflow:http://host:5000")
        if scheme not in _schemes():
            raise ConfigError(f"--track mlflow:{uri}: MLflow does not store runs at {scheme}:// URIs; give "
                              "mlflow:sqlite:///PATH/mlflow.db, a database (postgresql://, mysql://, mssql://), a "
                              "server (http://host:5000) or databricks")
        if scheme in ("http", "https"):
            self._check_server()
        elif scheme == "sqlite":
            _check_sqlite(uri)
        else:  # a database server or Databricks: ask it something, bounded in time
            self._probe()

    def _check_server(self) -> None:
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=5) as answer:
                answer.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ConfigError(f"--track: the MLflow tracking server at {self.uri} cannot be reached ({reason}); "
                              "start it, fix the URI, or pass --track-optional to run without tracking") from None

    def _probe(self, seconds: float = 20.0) -> None:
        import concurrent.futures

        def ask():
            import logging

            from mlflow.tracking import MlflowClient

            logging.getLogger("mlflow").setLevel(logging.CRITICAL)  # its own warnings: the error line says it
            MlflowClient(tracking_uri=self.uri).search_experiments(max_results=1)

        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            pool.submit(ask).result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            raise ConfigError(f"--track: MLflow at {self.uri} did not answer within {seconds:.0f} s; fix the URI or "
                              "pass --track-optional to run without tracking") from None
        except Exception as error:  # any driver's or client's error: one line
            raise ConfigError(f"--track: MLflow cannot use {self.uri} ({_first_line(error)}); fix the URI or pass "
                              "--track-optional to run without tracking") from None
        finally:
            pool.shutdown(wait=False)

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


def _scheme(uri: str) -> str:
    """The URI's scheme ('' for a plain path; 'databricks' for databricks, databricks://profile and kin)."""
    if uri in ("databricks", "databricks-uc", "uc"):
        return uri
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", uri) or re.match(r"^([A-Za-z][A-Za-z0-9+.\-]+):", uri)
    return match.group(1).lower().split("+")[0] if match else ""


def _schemes() -> set[str]:
    """The schemes MLflow stores runs at (its tracking-store registry)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        return set(_tracking_store_registry._registry)
    except Exception:  # a private name that moved: MLflow's documented schemes
        return {"file", "", "http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql", "mysql",
                "mssql"}


def _check_sqlite(uri: str) -> None:
    """sqlite:///PATH: a folder that exists and can be written, and a file (where there is one) that is SQLite."""

    where = f"--track mlflow:{uri}"
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""  # sqlite:////abs or sqlite:///relative
    if path in ("", ":memory:"):
        raise ConfigError(f"{where}: no file named (an in-memory store keeps nothing); give sqlite:///PATH/mlflow.db")
    path = Path(path.split("?", 1)[0])
    folder = path.parent
    if path.exists() and not path.is_file():
        raise ConfigError(f"{where}: {path} is not a file")
    if path.is_file():
        with open(path, "rb") as handle:
            head = handle.read(16)
        if head and head != b"SQLite format 3\x00":
            raise ConfigError(f"{where}: {path} is not an SQLite database")
    try:  # what MLflow will do: create the folder, write the file (a read-only disk says no here, not after the run)
        folder.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            open(path, "r+b").close()
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".radbench-probe-"):
                pass
    except OSError as error:
        raise ConfigError(f"{where}: cannot write there ({error.strerror or error}); give a store this user can "
                          "write, or pass --track-optional to run without tracking") from None


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(error).__name__


class TrackingFailed(RadbenchError):
    """Logging to MLflow failed after the results were stored."""


def after_the_run(action, what: str, output_dir: Path, optional: bool, warn):
    """Run a tracking `action` once the results are stored: its failure is one line (a warning under
    --track-optional) that says the results are safe, never a traceback over them."""
    try:
        return action()
    except Exception as error:  # MLflow, its store or the network: whatever it raises
        message = (f"--track: {what} failed ({_first_line(error)}); the results are stored in {output_dir} — "
                   "run the same command again with --track to log them")
        if not optional:
            raise TrackingFailed(message) from None
        warn(message + " (--track-optional)")
        return None


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

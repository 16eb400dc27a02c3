"""The engines users already run, behind one small interface: `submit(unit)` -> handle, `wait_any(handles)` ->
(handle, result or None, error line or None), `close()`. radbench schedules nothing itself beyond keeping at most
`max_parallel` units in flight and retrying failed ones (executors/driver.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from radbench.config import StudyConfig
from radbench.errors import RadbenchError
from radbench.executors.units import Unit, run_unit
from radbench.extras import require


@dataclass
class ExecutorOptions:
    name: str = "local"  # local | ray | slurm | submitit-local
    max_parallel: int = 4
    retries: int = 2  # a failed unit is submitted again up to this many times
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    partition: str | None = None  # slurm
    timeout_min: int = 24 * 60  # slurm
    slurm_args: dict[str, str] = field(default_factory=dict)  # passed through, e.g. account=..., qos=...
    address: str | None = None  # ray: auto, ray://host:port; none: a local cluster

    def __post_init__(self):  # before the study is read or anything written
        if self.name not in EXECUTORS:
            from radbench.errors import did_you_mean

            raise RadbenchError(f"unknown executor {self.name!r}{did_you_mean(self.name, EXECUTORS)}; use "
                                f"{', '.join(EXECUTORS[:-1])} or {EXECUTORS[-1]}")


EXECUTORS = ("local", "ray", "slurm", "submitit-local")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]


class RayBackend:
    """Ray tasks on a local cluster (started here, stopped when done) or the cluster at `address`."""

    def __init__(self, options: ExecutorOptions, study: StudyConfig):
        try:
            import ray
        except ImportError:
            raise RadbenchError("--executor ray needs Ray: pip install 'radbench[ray]' (or pip install ray)") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs = {"address": options.address} if options.address else {"num_cpus": max(options.max_parallel,
                                                                                            options.cpus_per_job)}
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        self.threads = options.cpus_per_job
        self.task = ray.remote(num_cpus=options.cpus_per_job, num_gpus=options.gpus_per_job, max_retries=0)(run_unit)
        self.study = study

    def submit(self, unit: Unit):
        return self.task.remote(self.study, unit, self.threads)

    def wait_any(self, handles: list):
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        try:
            return ready[0], self.ray.get(ready[0]), None
        except Exception as error:  # RayTaskError (the unit raised) or WorkerCrashedError (the worker died)
            cause = getattr(error, "cause", None)
            return ready[0], None, _first_line(cause if isinstance(cause, BaseException) else error)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


class SubmititBackend:
    """SLURM jobs through submitit (cluster "slurm"), or submitit's local executor (one subprocess per unit, the
    same code path without a cluster: cluster "local")."""

    def __init__(self, options: ExecutorOptions, study: StudyConfig, cluster: str):
        import submitit

        folder = Path(study.settings.output_dir) / "executor-logs" / "%j"
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        parameters = {"timeout_min": options.timeout_min, "cpus_per_task": options.cpus_per_job,
                      "name": f"radbench-{study.settings.name}"}
        if cluster == "slurm":
            parameters.update(gpus_per_node=options.gpus_per_job, slurm_partition=options.partition,
                              slurm_additional_parameters=dict(options.slurm_args))
            parameters = {k: v for k, v in parameters.items() if v is not None}
        elif options.gpus_per_job:
            parameters["gpus_per_node"] = options.gpus_per_job
        self.executor.update_parameters(**parameters)
        self.study, self.threads = study, options.cpus_per_job

    def submit(self, unit: Unit):
        return self.executor.submit(run_unit, self.study, unit, self.threads)

    def wait_any(self, handles: list):
        while True:
            for job in handles:
                if job.done():
                    error = job.exception()
                    if error is not None:
                        return job, None, _first_line(error)
                    return job, job.result(), None
            time.sleep(0.5)

    def close(self) -> None:
        pass


def make_backend(options: ExecutorOptions, study: StudyConfig):
    if options.name == "ray":
        require("ray", "--executor ray")
        return RayBackend(options, study)
    if options.name in ("slurm", "submitit-local"):
        require("slurm", f"--executor {options.name}")
        return SubmititBackend(options, study, "slurm" if options.name == "slurm" else "local")
    raise RadbenchError(f"unknown executor {options.name!r}; use local, ray, slurm or submitit-local")

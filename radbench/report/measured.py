"""What the page's numbers stand on: each backbone's weights identity (hub id and revision, checkpoint sha256, or
random initialisation) and each dataset's test set (patients, images or cases, positives per class)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from radbench.results.store import PER_CASE_TASKS


def weights_text(identity: dict, weights: str = "") -> str:
    """`weights`: what the study said (a checkpoint's path)."""
    if identity.get("weights") == "none":
        return "random initialisation (no pretrained weights)"
    if "checkpoint_sha256" in identity:
        return f"checkpoint {weights} (sha256 {identity['checkpoint_sha256'][:12]})"
    if identity.get("weights") not in (None, "hub"):  # a store from before identities were kept: a path
        return f"checkpoint {weights} (sha256 not recorded)"
    hub = identity.get("hub_id") or identity.get("model_id", "?")
    revision = identity.get("hub_revision")
    return f"hub {hub}" + (f" @ {revision[:10]}" if revision else " (revision not recorded: not in the local cache)")


def backbone_rows(jobs: pd.DataFrame) -> pd.DataFrame:
    """backbone, weights, model, random_init — one row per backbone (its first stored job's identity)."""
    rows = []
    for backbone, group in jobs.groupby("backbone", sort=True):
        config = json.loads(group.config.iloc[0])["backbone"]
        identity = {"weights": config.get("weights", "hub"), "model_id": config.get("name", backbone),
                    **config.get("identity", {})}  # older stores kept the study's words only
        model = f"{identity.get('family', '')}:{identity.get('model_id', config.get('name', ''))}".strip(":")
        if identity.get("model_kwargs"):
            model += " " + json.dumps(identity["model_kwargs"], sort_keys=True)
        rows.append([backbone, weights_text(identity, str(config.get("weights", ""))), model,
                     identity.get("weights") == "none"])
    return pd.DataFrame(rows, columns=["backbone", "weights", "model", "random_init"])


def _tested_on(job) -> str:
    evaluation = (json.loads(job.details) if isinstance(job.details, str) else job.details).get("evaluation", {})
    return f"{evaluation['dataset']} (external test)" if evaluation.get("kind") == "external" else job.dataset


def dataset_rows(store, jobs: pd.DataFrame) -> pd.DataFrame:
    """dataset, task, test_patients, test_samples, positives — from one stored job per dataset (and per external
    test set, named "<dataset> (external test)": its own images, on the classes matched)."""
    jobs = jobs.assign(dataset=[_tested_on(job) for job in jobs.itertuples()])
    # a job with predictions first: a retrieval job (per-query rows) stands for its dataset only where none has
    first = jobs.assign(cases_only=jobs.task == "retrieval").sort_values("cases_only", kind="stable")
    first = first.groupby("dataset", sort=True).head(1).sort_values("dataset")
    cases = store.sample_metrics() if first.task.isin(PER_CASE_TASKS).any() else None
    rows = []
    for job in first.itertuples():
        if job.task in PER_CASE_TASKS:
            of_job = cases[cases.job == job.key].drop_duplicates("sample_id")
            count = len(of_job)
            patients = of_job.patient_id.nunique() if of_job.patient_id.notna().all() else count
            rows.append([job.dataset, job.task, patients, count, "—", False])
            continue
        class_names, sample_ids, targets, _ = store.predictions(job.key)
        patient_ids = store.patient_ids(job.key)
        patients = len(set(patient_ids))
        if job.task == "binary":
            positives = f"{class_names[1]}: {int(np.nansum(targets[:, 1]))}"
        else:
            positives = ", ".join(f"{name}: {int(np.nansum(targets[:, c]))}" for c, name in enumerate(class_names))
        rows.append([job.dataset, job.task, patients, len(targets), positives,
                     [str(p) for p in patient_ids] == [str(s) for s in sample_ids]])
    return pd.DataFrame(rows, columns=["dataset", "task", "test_patients", "test_samples", "positives",
                                       "images_as_patients"])


def patient_note(datasets: pd.DataFrame) -> str | None:
    """Said once: which datasets have no patient ids, so that each test image counts as a patient."""
    named = sorted(datasets[datasets.images_as_patients].dataset)
    if not named:
        return None
    return (f"No patient ids in {', '.join(named)}: each test image counts as a patient (MedMNIST and other sets "
            "without them); where one patient has several images, intervals are narrower than they should be.")


def selection_notes(jobs: pd.DataFrame) -> list[str]:
    """One line per protocol whose jobs chose their hyperparameters on too few validation cases, or by a tie, or
    whose refit collapsed."""
    import json

    notes: dict[tuple[str, str], set[str]] = {}
    for job in jobs.itertuples():
        details = json.loads(job.details) if isinstance(job.details, str) else (job.details or {})
        for key, what in (("selection_small_val", "small"), ("selection_tie", "tie"), ("refit_fallback", "refit")):
            if key in details:
                notes.setdefault((job.protocol, what), set()).add(job.backbone)
    lines = []
    for (protocol, what), backbones in sorted(notes.items()):
        who = ", ".join(sorted(backbones))
        lines.append({"small": f"{protocol} ({who}): hyperparameters chosen on fewer than 10 validation cases — the "
                               "choice may be noise",
                      "tie": f"{protocol} ({who}): validation could not tell some candidates apart (a tie; see the "
                             "job's details)",
                      "refit": f"{protocol} ({who}): the train + val refit collapsed (under half the selected run's "
                               "val score); the selected run's model, trained on train, was tested (see the job's "
                               "details)"}[what])
    return lines

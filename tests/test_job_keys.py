"""Job keys are what a rerun resumes by: a change that alters them silently recomputes every stored job. This pins
the key of one job; change the expected value only with a deliberate, announced break of old stores."""

from __future__ import annotations

from radbench.config import parse_study
from radbench.data import load_dataset
from radbench.jobs import plan_jobs


def test_job_keys_stay_stable(tmp_path, pneumonia_npz):
    raw = {"name": "s", "output_dir": str(tmp_path / "out"), "seeds": [3],
           "backbones": [{"name": "timm:test_vit", "weights": "none"}],
           "datasets": [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}],
           "protocols": [{"knn": {"k": [5]}}, {"linear": {"epochs": 2, "lr": [0.1]}}]}
    study = parse_study(raw, tmp_path)
    jobs = plan_jobs(study, study.backbones[0], load_dataset(study.datasets[0]), "0123456789abcdef")
    assert [job.key for job in jobs] == EXPECTED


EXPECTED = ['388f4573c5c9aca71265', 'a817843674a3a26d7ebd']

"""`datasets: [...]` on a protocol entry (as `backbones:`): the protocol runs on those datasets only; its
checks (few-shot draws) apply to them only; names and kinds are checked when the study is read, one line each."""

from __future__ import annotations

from tests.conftest import tiny_study, write_study


def _datasets(pneumonia_npz):
    return [{"name": "big", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 200},
            {"name": "small", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": {"train": 6}, "balance": True}]


def test_a_protocol_runs_on_its_datasets_only(tmp_path, pneumonia_npz, cli):
    """Few-shot at 4 patients per class cannot draw from 6 balanced training images (3 per class): limited to `big`, the full (unshrunk)
    study plans and runs, and kNN still runs on both."""
    import radbench

    protocols = [{"knn": {"k": [3]}}, {"few_shot": {"shots": [4], "repeats": 1, "head": "knn", "datasets": ["big"]}}]
    study = write_study(tmp_path, tiny_study(tmp_path, _datasets(pneumonia_npz), protocols))
    planned = cli("plan", study)
    assert planned.exit_code == 0, planned.stderr
    results = radbench.run(study)
    jobs = results.jobs
    assert sorted(jobs[jobs.dataset == "small"].protocol) == ["knn"]
    assert sorted(jobs[jobs.dataset == "big"].protocol) == ["few_shot@4shot", "knn"]


def test_without_the_restriction_the_small_dataset_stops_the_study(tmp_path, pneumonia_npz, cli):
    protocols = [{"knn": {"k": [3]}}, {"few_shot": {"shots": [4], "repeats": 1, "head": "knn"}}]
    result = cli("plan", write_study(tmp_path, tiny_study(tmp_path, _datasets(pneumonia_npz), protocols)))
    assert result.exit_code == 2 and "small" in result.stderr


def test_unknown_or_wrong_kind_dataset_names_are_one_line_each(tmp_path, pneumonia_npz, shared_data, cli):
    from tests.test_segmentation import shenzhen

    datasets = [*_datasets(pneumonia_npz), shenzhen(shared_data)]
    protocols = [{"knn": {"k": [3], "datasets": ["bigg"]}}, {"linear": {"datasets": [datasets[2]["name"]]}},
                 {"segmentation": {"epochs": 1, "datasets": "big"}}]
    result = cli("plan", write_study(tmp_path, tiny_study(tmp_path, datasets, protocols)))
    lines = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert "protocols[0].knn.datasets: 'bigg' is not a dataset of this study (did you mean 'big'?)" in lines
    assert (f"protocols[1].linear.datasets: '{datasets[2]['name']}' is a segmentation dataset; linear is a "
            "classification protocol") in lines
    assert "protocols[2].segmentation.datasets: a list of the study's dataset names" in lines


def test_plan_says_what_each_datasets_numbers_stand_on(tmp_path, pneumonia_npz, cli):
    import numpy as np

    protocols = [{"knn": {"k": [3]}}]
    result = cli("plan", write_study(tmp_path, tiny_study(tmp_path, _datasets(pneumonia_npz)[:1], protocols)))
    assert result.exit_code == 0, result.stderr
    from radbench.config import load_study
    from radbench.data import load_dataset

    config = load_study(tmp_path / "study.yaml")
    test = np.asarray(load_dataset(config.datasets[0]).splits["test"].labels)
    line = " ".join(result.stdout.split())
    assert (f"dataset big: binary, 2 classes; train 200, val 200, test 200; 200 test patients (no patient ids: each "
            f"image counts as a patient); test positives: normal {int((test == 0).sum())}, pneumonia "
            f"{int((test == 1).sum())}") in line

"""radbench from a notebook: run a study, register an in-house nn.Module as a backbone, look at the results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import radbench
from tests.conftest import tiny_study


class SmallNet(torch.nn.Module):
    """An in-house CNN: (B, 3, H, W) -> (B, 16)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def inhouse():
    seen = []

    @radbench.register_backbone("inhouse_test_cnn", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), version="v1")
    def build(image_size, weights):
        seen.append(weights)
        model = SmallNet()
        if weights:
            model.load_state_dict(torch.load(weights, weights_only=True))
        return model

    return seen


def test_run_a_dict_study_with_an_in_house_backbone_and_its_checkpoint(tmp_path, pneumonia_npz, inhouse):
    torch.manual_seed(1)
    checkpoint = tmp_path / "inhouse.pt"
    torch.save(SmallNet().state_dict(), checkpoint)
    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40}],
                       [{"logreg": {"C": [1.0]}}])
    study["backbones"] = [{"name": "inhouse_test_cnn", "weights": str(checkpoint)},
                          {"name": "inhouse_test_cnn", "weights": "none", "label": "inhouse_random"}]
    results = radbench.run(study)
    assert str(checkpoint) in inhouse and None in inhouse  # the builder got the study's weights
    jobs = results.jobs
    identity = jobs.set_index("backbone").config["inhouse_test_cnn"]["backbone"]["identity"]
    assert identity["family"] == "custom" and identity["version"] == "v1" and len(identity["checkpoint_sha256"]) == 64
    scores = results.predictions.groupby("backbone")["score_pneumonia"].apply(np.array)
    assert not np.allclose(scores["inhouse_test_cnn"], scores["inhouse_random"])  # the checkpoint was loaded
    assert set(results.predictions.patient_id) and "patient_id" in results.predictions
    assert isinstance(jobs.selected.iloc[0], dict) and isinstance(jobs.config.iloc[0], dict)
    text = repr(results)
    assert "2 jobs stored of 2 planned (0 failed)" in text and "2 backbone(s)" in text
    assert "<table" in results._repr_html_() and "inhouse_random" in results._repr_html_()
    again = radbench.run(study)  # resumes: nothing to redo
    assert again.jobs.finished_at.tolist() == jobs.finished_at.tolist()


def test_run_takes_a_path_and_the_clis_overrides(tmp_path, pneumonia_npz):
    from tests.conftest import write_study

    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}],
                       [{"knn": {"k": [3]}}])
    results = radbench.run(write_study(tmp_path, study), limit=20, seeds=[0, 1], output_dir=tmp_path / "other")
    assert sorted(results.jobs.seed) == [0, 1] and (tmp_path / "other" / "results.sqlite").is_file()
    assert results.jobs.config.iloc[0]["dataset"]["split_sizes"]["test"] <= 20  # limit: whole patients, at most 20


def test_a_builder_that_is_not_a_module_is_one_line(tmp_path, pneumonia_npz):
    from radbench.errors import RadbenchError

    @radbench.register_backbone("inhouse_broken")
    def build(image_size, weights):
        return "not a model"

    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 20}],
                       [{"knn": {"k": [3]}}])
    study["backbones"] = [{"name": "inhouse_broken", "weights": "none"}]
    with pytest.raises(RadbenchError, match="its builder returned str, not a torch module"):
        radbench.run(study)


def test_a_dict_study_expands_variables_as_its_yaml_would(tmp_path, pneumonia_npz, monkeypatch):
    monkeypatch.setenv("RADBENCH_TEST_NPZ", str(pneumonia_npz))
    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": "${RADBENCH_TEST_NPZ}", "limit": 20}],
                       [{"knn": {"k": [3]}}])
    results = radbench.run(study)
    from pathlib import Path

    assert Path(results.jobs.config.iloc[0]["dataset"]["path"]).resolve() == Path(pneumonia_npz).resolve()


def test_progress_is_shown_in_an_interactive_session_and_quiet_elsewhere(tmp_path, pneumonia_npz, capsys,
                                                                         monkeypatch):
    import radbench
    from radbench import api
    from tests.conftest import tiny_study

    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 20}],
                       [{"knn": {"k": [3]}}])
    radbench.run(study)  # pytest captures stderr: not interactive
    assert "study: 1 of 1 jobs done" not in capsys.readouterr().err
    monkeypatch.setattr(api, "_interactive", lambda: True)
    radbench.run({**study, "seeds": [0, 1]})
    assert "study: 2 of 2 jobs done" in capsys.readouterr().err

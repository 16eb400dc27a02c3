"""A researcher's first hour: what `plan` catches before any job runs, what a run says and keeps going with."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_study, write_study


def _datasets(pneumonia_npz, limit=40):
    return [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": limit}]


def test_plan_names_a_backbone_whose_modules_lora_cannot_target_and_the_fix(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, _datasets(pneumonia_npz), [{"lora": {"epochs": 1, "lr": [1e-3]}}])
    study["backbones"].append({"name": "timm:resnet18", "weights": "none"})
    result = cli("plan", write_study(tmp_path, study))
    assert result.exit_code != 0 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "timm:resnet18" in text and "['qkv']" in text and "backbones: [...]" in text
    study["protocols"] = [{"lora": {"epochs": 1, "lr": [1e-3], "backbones": ["timm:test_vit"]}}]
    assert cli("plan", write_study(tmp_path, study)).exit_code == 0


def test_a_shrunk_run_leaves_lora_out_where_it_cannot_apply_and_says_so(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, _datasets(pneumonia_npz), [{"lora": {"epochs": 1, "lr": [1e-3]}}])
    study["backbones"].append({"name": "timm:resnet18", "weights": "none"})
    result = cli("plan", write_study(tmp_path, study), "--limit", "30")
    assert result.exit_code == 0, result.output
    text = " ".join((result.output + result.stderr).split())
    assert "lora left out of this shrunk run on timm:resnet18 x p: LoRA target_modules ['qkv']" in text


@pytest.mark.parametrize("targets", [["qkv"], ["fc1", "fc2"]])
def test_lora_targets_a_vit_has_pass_the_check(targets):
    from radbench.backbones import BackboneConfig
    from radbench.backbones.architecture import architecture

    arch = architecture(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    assert arch.lora_missing(targets) == []
    assert arch.lora_missing(["qkv", "nonsense"]) == ["nonsense"]


def test_a_failing_job_is_recorded_and_the_run_goes_on_then_exits_non_zero_with_a_summary(
        tmp_path, pneumonia_npz, monkeypatch, cli):
    import re

    import radbench
    import radbench.runner as runner

    breast = pneumonia_npz.parent / "breastmnist_resaved.npz"
    study = write_study(tmp_path, tiny_study(tmp_path, [
        {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 40},
        {"name": "b", "adapter": "medmnist", "path": str(breast), "limit": 40}], [{"knn": {"k": [5]}}], seeds=[0, 1]))
    real = runner._run_feature_job

    def failing(job, *args, **kwargs):
        if job.seed == 1 and job.dataset.name == "p":
            raise FloatingPointError("loss is NaN at step 3")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(runner, "_run_feature_job", failing)
    result = cli("run", study, "--fail-fast")
    assert result.exit_code != 0
    assert radbench.load(tmp_path / "out").status.set_index("dataset").loc["b", "done"] == 0  # stopped at p

    result = cli("run", study)
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert "1 job(s) failed" in text and "timm:test_vit x p / knn (seed 1): FloatingPointError: loss is NaN" in text
    status = radbench.load(tmp_path / "out").status.set_index("dataset")
    assert status.loc["b", "done"] == 2 and status.loc["p", "failed"] == 1  # the other unit ran
    log = (tmp_path / "out" / "run.log").read_text().splitlines()
    assert any(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.* warning .*loss is NaN", line) for line in log)

    monkeypatch.setattr(runner, "_run_feature_job", real)
    result = cli("run", study)
    assert result.exit_code == 0 and "next: radbench report" in result.stderr

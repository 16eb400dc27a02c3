"""The shipped seed studies (configs/studies/): `radbench plan` reads every one against stand-ins of the public
layouts (tests/standins.py) and counts the jobs the papers' protocols imply; each also runs end to end, shrunk to
a random-initialised ViT-Tiny at 32 px, one seed and one epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import standins

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"
MEDMNIST_2D = ["pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
               "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("data")
    for build in (standins.chestxray14, standins.chexpert, standins.montgomery, standins.brain_tumour,
                  standins.liver, standins.aptos, standins.isic2019, standins.pediatric_pneumonia):
        build(root, shared_data)
    standins.cbis_ddsm(root / "CBIS-DDSM", shared_data)
    standins.medmnist(root, MEDMNIST_2D, [28, 64, 128, 224])
    return root


def _jobs(output: str) -> int:
    return int(re.search(r"jobs: (\d+) \(", " ".join(output.split())).group(1))


def test_every_shipped_study_is_planned_and_its_jobs_counted(data_root, cli, tmp_path):
    seeds = 3
    # per classification unit: knn, linear, finetune, lora, bitfit = 1 job each, few_shot one per shots value (5)
    expected = {
        # msn (a hub model) is not checked offline; per segmentation unit: 2 decoders, few-shot 4 x 5 draws + all
        # and a U-Net from scratch once per segmentation set (planned with the first backbone)
        "dinov2-radiology": (9 * (2 * (5 + 5) + 3 * (2 + 4 * 5 + 1)) + 3) * seeds,
        # blip not checked offline; knn, linear, finetune, 2 transformer heads, and on the 7 ViTs 3 decapitated
        # ones, 4 frozen counts, 4 kept depths (ResNet-152 has no blocks)
        "foundation-medical": (8 * 4 * (1 + 1 + 1 + 2) + 7 * 4 * (3 + 4 + 4)) * seeds,
        "dino-cxr": 3 * 2 * 2 * seeds,
        "medmnist-plus": 7 * 48 * 2 * seeds,
    }
    assert {p.stem for p in STUDIES.glob("*.yaml")} == set(expected)
    for name, jobs in expected.items():
        result = cli("plan", STUDIES / f"{name}.yaml", "--data-root", data_root, "--output-dir", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        assert _jobs(result.stdout) == jobs, result.stdout[-500:]
        text = (STUDIES / f"{name}.yaml").read_text()
        assert text.startswith("# ") and "reported" in text.split("name:")[0]  # what the paper found, up top


def test_an_unset_data_root_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("RADBENCH_DATA", raising=False)
    result = cli("plan", STUDIES / "dino-cxr.yaml")
    assert result.exit_code == 2
    assert "datasets[0].path: ${RADBENCH_DATA} is not set; export RADBENCH_DATA=... (or pass --data-root DIR)" in \
        " ".join(result.stderr.split())


@pytest.mark.parametrize("name", ["dinov2-radiology", "foundation-medical", "dino-cxr", "medmnist-plus"])
def test_each_shipped_study_runs_shrunk_end_to_end(data_root, cli, tmp_path, name, monkeypatch):
    import radbench
    from radbench.config import load_study

    shrink = ["--backbone", "timm:vit_tiny_patch16_224", "--weights", "none", "--image-size", "32", "--seeds", "0",
              "--epochs", "1", "--output-dir", tmp_path / "out", "--quiet"]
    plan = cli("plan", STUDIES / f"{name}.yaml", "--data-root", data_root, *shrink[:-1])
    result = cli("run", STUDIES / f"{name}.yaml", "--data-root", data_root, *shrink)
    assert result.exit_code == 0, result.stderr
    results = radbench.load(tmp_path / "out")
    assert len(results.jobs) == _jobs(plan.stdout) > 0  # what plan counted is what ran
    monkeypatch.setenv("RADBENCH_DATA", str(data_root))
    assert set(results.jobs.dataset) == {d.name for d in load_study(STUDIES / f"{name}.yaml").datasets}
    assert results.status.failed.sum() == 0


def test_shipped_pretraining_runs_shrunk_and_evaluates_its_checkpoints(data_root, cli, tmp_path):
    """configs/pretrain/dino-cxr.yaml with its evaluation study, on the stand-ins: a few steps of a random ViT."""
    import radbench

    config = STUDIES.parent / "pretrain" / "dino-cxr.yaml"
    result = cli("pretrain", config, "--data-root", data_root, "--output-dir", tmp_path / "out", "--backbone",
                 "timm:test_vit", "--weights", "none", "--image-size", "32", "--batch-size", "8", "--max-steps", "2",
                 "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "2 steps run" in " ".join(result.stderr.split())
    jobs = radbench.load(tmp_path / "out").jobs
    assert set(jobs.backbone) == {"dino-cxr-pretrain@step0", "dino-cxr-pretrain@step2"}
    assert set(jobs.dataset) == {"pediatric_pneumonia"}

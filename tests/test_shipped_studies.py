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
    standins.medmnist(root, ["pneumoniamnist", "breastmnist"], [224], per_split=40)  # 20 per class: 16 shots
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
        # biomedclip (an hf-hub model) not checked offline; zero_shot, knn, logreg, few_shot 5 shots x 3 draws
        "zero-shot-cxr": 2 * 2 * (1 + 1 + 1 + 5 * 3) * seeds,
        "zero-shot-medmnist": 2 * 2 * (1 + 1 + 3 * 3) * seeds,
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


def documented_commands(path: Path) -> list[list[str]]:
    """The commands of a config file's "Try it shrunk" comment block, as a user copies them."""
    lines = path.read_text().split("name:")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Try it shrunk"))
    commands = []
    for line in lines[start + 1:]:
        text = line.removeprefix("#").strip()
        if text.startswith("radbench "):
            commands.append(text.split()[1:])
        elif commands and not text.startswith("radbench"):
            break
    return commands


SHIPPED = [*(f"studies/{p.stem}" for p in sorted(STUDIES.glob("*.yaml"))), "pretrain/dino-cxr"]


@pytest.mark.parametrize("config", SHIPPED)
def test_each_shipped_file_runs_its_documented_shrink_line_to_a_rendered_report(data_root, cli, tmp_path, config,
                                                                              monkeypatch):
    """Exactly the file's own lines (with /data the stand-ins' root, run from a scratch folder): the run, then the
    report; both exit 0, and the page opens in headless Chromium with every figure and no console error."""
    import radbench
    from tests.browser import chromium, open_page

    root = STUDIES.parent.parent
    commands = documented_commands(STUDIES.parent / f"{config}.yaml")
    assert [c[0] for c in commands] == ["pretrain" if config.startswith("pretrain") else "run", "report"]
    monkeypatch.chdir(tmp_path)  # the lines' relative runs/ folders land here
    run, report = ([str(data_root) if a == "/data" else str(root / a) if a.startswith("configs/") else a
                    for a in command] for command in commands)
    if run[0] == "run":
        planned = cli("plan", *run[1:])
        assert planned.exit_code == 0, planned.stderr
    done = cli(*run, "--quiet")
    assert done.exit_code == 0, done.stderr
    out = tmp_path / report[1]
    results = radbench.load(out)
    assert len(results.jobs) > 0 and results.status.failed.sum() == 0
    if run[0] == "run":
        extra = results.jobs.protocol.str.contains("@external:|@corrupt:")  # rows of a job's extra test sets
        assert (~extra).sum() == _jobs(planned.stdout)  # what plan counted is what ran
        if config == "studies/dinov2-radiology":  # NIH <-> CheXpert, both ways, from every frozen/trained job
            assert set(results.jobs[extra].protocol.str.split("@external:").str[1]) == {"nih", "chexpert"}
        monkeypatch.setenv("RADBENCH_DATA", str(data_root))
        from radbench.config import load_study

        assert set(results.jobs.dataset) == {d.name for d in load_study(STUDIES.parent / f"{config}.yaml").datasets}
    else:
        assert set(results.jobs.backbone) == {"dino-cxr-pretrain@step0", "dino-cxr-pretrain@step2"}
    rendered = cli(*report, "--resamples", "100")
    assert rendered.exit_code == 0, rendered.stderr
    if chromium() is None:
        pytest.skip("needs Debian's chromium for the page check (.ci/run installs it)")
    loaded, images, console = open_page(out / "report" / "index.html", tmp_path)
    assert loaded == images > 0 and not console, (loaded, images, console)

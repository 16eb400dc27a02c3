"""The shipped seed studies (configs/studies/): `radbench plan` reads every one against stand-ins of the public
layouts (tests/standins.py) and counts the jobs the papers' protocols imply; each also runs end to end, shrunk to
a random-initialised ViT-Tiny at 32 px, one seed and one epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
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
        "foundation-medical": (8 * 4 * (1 + 1 + 1 + 2) + 7 * 4 * (3 + 4 + 4)) * 5,  # the paper's five runs
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


def test_foundation_medical_follows_the_papers_protocol(data_root, monkeypatch):
    """Huix et al.: 80/10/10 splits of each dataset (70/15/15 for APTOS), CheXpert's 14 observations, four base
    lrs with the lr divided by 10 at each plateau and the best val checkpoint tested, flips both ways and colour
    jitter; the page lists what still differs."""
    from radbench.config import load_study
    from radbench.data import load_dataset

    monkeypatch.setenv("RADBENCH_DATA", str(data_root))
    study = load_study(STUDIES / "foundation-medical.yaml")
    assert study.settings.references == ["huix2024"] and len(study.settings.deviations) == 7
    splits = {}
    for cfg in study.datasets:
        dataset = load_dataset(cfg)
        sizes = {name: len(split) for name, split in dataset.splits.items()}
        splits[cfg.name] = (dataset.split_origin, sizes, len(dataset.class_names))
    assert "fractions=[0.7, 0.15, 0.15]" in splits["aptos"][0]
    for name in ("cbis_ddsm", "isic2019", "chexpert"):
        assert "fractions=[0.8, 0.1, 0.1]" in splits[name][0], splits[name]
        sizes = splits[name][1]
        assert sizes["train"] > 4 * sizes["test"] and abs(sizes["val"] - sizes["test"]) <= 0.5 * sizes["test"] + 2
    assert splits["chexpert"][2] == 14
    finetune = next(p.config for p in study.protocols if p.type == "finetune")
    assert finetune.lr == [1e-5, 5e-5, 2e-4, 1e-3] and finetune.schedule == "plateau" and not finetune.refit
    assert finetune.augment.vflip and finetune.augment.hflip and finetune.augment.color_jitter is not None
    tuned = next(p.config for p in study.protocols if p.label == "tuned_transformer")
    assert tuned.schedule == "plateau" and len(tuned.lr) == 4 and tuned.backbone.train


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
    if config == "studies/foundation-medical":  # the paper's numbers beside the shrunk run's: none comparable
        said = " ".join(planned.stderr.split())
        assert "note: protocols[3].transformer_head: init deit_base_patch16_224 (a pretrained DeiT) replaced by a " \
               "small random head (--weights none)" in said and "100 epochs cut to 1 (--epochs)" in said, said
        published = pd.read_csv(out / "report" / "tables" / "published.csv", dtype={"table": str})
        assert len(published) == 148
        assert (published.verdict == "not run (backbone not in this study)").all()  # --backbone replaced them
        page = (out / "report" / "index.html").read_text()
        assert "differs from the paper it follows in 7 named way(s)" in page and "SEEM (Focal-T) is not run" in page
    if chromium() is None:
        pytest.skip("needs Debian's chromium for the page check (.ci/run installs it)")
    loaded, images, console = open_page(out / "report" / "index.html", tmp_path)
    assert loaded == images > 0 and not console, (loaded, images, console)

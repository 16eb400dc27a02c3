"""A researcher's first hour: what `plan` catches before any job runs, what a run says and keeps going with."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    real = runner.run_job

    def failing(study, job, *args, **kwargs):
        if job.seed == 1 and job.dataset.name == "p":
            raise FloatingPointError("loss is NaN at step 3")
        return real(study, job, *args, **kwargs)

    monkeypatch.setattr(runner, "run_job", failing)
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

    monkeypatch.setattr(runner, "run_job", real)
    result = cli("run", study)
    assert result.exit_code == 0 and "next: radbench report" in result.stderr


@pytest.mark.parametrize("name, repo", [("rad_dino", "microsoft/rad-dino"), ("medsiglip", "google/medsiglip-448"),
                                        ("msn_vitb16", "facebook/vit-msn-base"),
                                        ("msn_vitl16", "facebook/vit-msn-large"),
                                        ("blip_vitb", "Salesforce/blip-image-captioning-base")])
def test_names_people_type_resolve_to_their_hub_models_and_are_listed(name, repo, cli):
    from radbench.backbones import resolve_entry

    entry = resolve_entry(name)
    assert (entry.family, entry.model_id) == ("hf", repo) and entry.licence and entry.native
    listed = cli("list", "backbones").stdout
    assert name in listed


def test_an_unreachable_hub_fails_in_seconds_with_the_offline_switch_named(tmp_path):
    """A closed port stands in for a firewall: the hub client would retry each file for a minute and more."""
    import os
    import subprocess
    import sys
    import time

    code = ("from radbench.backbones import BackboneConfig, describe_backbone\n"
            "describe_backbone(BackboneConfig(name='rad_dino'))")
    env = {**os.environ, "HF_ENDPOINT": "https://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode != 0 and "HF_HUB_OFFLINE=1 was set for this run" in result.stderr
    assert "Retrying" not in result.stderr and seconds < 30, seconds


def test_the_page_says_what_was_measured_and_makes_no_comparison_on_a_tiny_test_set(tmp_path, pneumonia_npz, cli):

    import pandas as pd

    import radbench

    study = tiny_study(tmp_path, _datasets(pneumonia_npz, limit=8), [{"knn": {"k": [3]}}])
    study["backbones"].append({"name": "timm:test_vit", "weights": "none", "label": "vit2",
                               "model_kwargs": {"depth": 2}})
    assert cli("run", write_study(tmp_path, study)).exit_code == 0
    assert cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0").exit_code == 0
    results = radbench.load(tmp_path / "out")
    _, _, targets, _ = results.store.predictions(results.jobs.key.iloc[0])
    size = results.jobs.config.iloc[0]["dataset"]["split_sizes"]["test"]
    assert size < 10 and len(targets) == size
    page = " ".join((tmp_path / "out" / "report" / "index.html").read_text().split())
    assert "What was measured" in page and "RANDOM INITIALISATION" in page
    datasets = pd.read_csv(tmp_path / "out" / "report" / "tables" / "datasets.csv")
    assert datasets.test_samples.tolist() == [size]
    assert datasets.positives.tolist() == [f"pneumonia: {int(targets[:, 1].sum())}"]
    assert datasets.images_as_patients.tolist() == [True]  # MedMNIST has no patient ids, and the page says so
    assert "No patient ids in p: each test image counts as a patient" in page
    board = pd.read_csv(tmp_path / "out" / "report" / "tables" / "leaderboard.csv")
    other = board[(board.metric == "auroc") & (board["rank"] == 2)].iloc[0]
    assert other.verdict.startswith("test set too small to tell") and pd.isna(other.p_vs_best)
    assert "no comparison with" in page and "significantly" not in page.split("What was measured")[0]


def test_an_interval_containing_chance_is_marked():
    from radbench.report.html import findings

    board = pd.DataFrame([{"dataset": "d", "protocol": "knn", "metric": "auroc", "rank": 1, "backbone": "a",
                           "mean": 0.52, "ci_low": 0.41, "ci_high": 0.63, "interval": "test patients", "runs": 1, "seeds": 1,
                           "test_size": 80, "contains_chance": True}])
    assert "indistinguishable from chance" in findings(board, {"d": "auroc"})[0]


def test_a_missing_extra_is_one_line_at_plan_naming_it(tmp_path, cli, pneumonia_npz, monkeypatch):
    import radbench.extras as extras

    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda extra: extra not in ("lora", "hf") and real(extra))
    study = tiny_study(tmp_path, _datasets(pneumonia_npz), [{"knn": {"k": [3]}}, {"lora": {"epochs": 1}}])
    study["backbones"].append({"name": "hf:facebook/dinov2-small", "weights": "none"})
    result = cli("plan", write_study(tmp_path, study))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 3, result.stderr
    assert 'protocol lora needs peft, which is not installed: pip install "radbench[lora]"' in errors[1]
    assert "backbone hf:facebook/dinov2-small (hf family) needs transformers" in errors[0]
    assert errors[2] == 'error: all of them at once: pip install "radbench[hf,lora]"'  # one command for every extra


def test_every_extra_names_a_module_the_package_imports():
    """The extras table and pyproject agree: each extra of pyproject (but all/dev) is in radbench.extras."""
    from pathlib import Path

    import tomllib

    from radbench.extras import EXTRAS

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = set(project["optional-dependencies"]) - {"all", "dev"}
    assert declared == set(EXTRAS)
    for extra, (_, distribution) in EXTRAS.items():
        assert any(dep.startswith(distribution) for dep in project["optional-dependencies"][extra])
        assert not any(dep.lower().startswith(distribution.lower()) for dep in project["dependencies"])


def test_few_shot_on_multi_label_data_counts_the_patients_a_class_has_and_says_which_shots_fit():
    from types import SimpleNamespace

    import numpy as np

    from radbench.data.base import Task
    from radbench.errors import DataError
    from radbench.protocols.few_shot import FewShotConfig, check_few_shot

    patients = np.array([f"p{i}" for i in range(7)])
    labels = np.zeros((7, 2), dtype=np.float32)
    labels[:6, 0] = 1  # A: 6 patients (the rarer class: drawn first)
    labels[:, 1] = 1  # B: 7 patients, 6 of them also A's
    train = SimpleNamespace(patient_ids=patients, labels=labels)
    dataset = SimpleNamespace(name="nih", task=Task.MULTILABEL, num_classes=2, class_names=("A", "B"),
                              splits={"train": train}, notes=())
    with pytest.raises(DataError) as raised:
        check_few_shot(FewShotConfig(shots=[1, 4], repeats=1), dataset, [0])
    message = str(raised.value)
    assert "class 'B' has 7 training patients; 4 of them were drawn for rarer classes first" in message
    assert "leaving 3, fewer than 4 shots" in message and "lower the shots to at most 3" in message
    assert "limit" not in message  # no limit trimmed this split: raising it is no fix
    check_few_shot(FewShotConfig(shots=[1, 3], repeats=1), dataset, [0])  # the suggested shots run


def test_results_at_100_columns_keep_every_name_whole_and_tables_apart(tmp_path, cli, monkeypatch):
    import radbench.cli
    from radbench.results import JobRecord, ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    names = ["timm:resnet18", "timm:vit_tiny_patch16_224", "timm:vit_small_patch16_224"]
    y = np.array([[1, 0], [0, 1]] * 10, np.float32)
    for b, backbone in enumerate(names):
        for task, dataset in (("binary", "pneumonia"), ("segmentation", "lungs")):
            config = {"backbone": {"name": backbone}, "protocol": {"type": "knn"}, "seed": 0, "repeat": 0}
            segmentation = task == "segmentation"
            store.save(JobRecord(
                key=f"{b}{task}", study="s", backbone=backbone, dataset=dataset, protocol="knn", protocol_type="knn",
                seed=0, repeat=0, task=task, config=config, selected={}, candidates=[], details={}, timings={},
                feature_cache=None, val_metrics={}, class_names=("a", "b"),
                test_metrics={"dice": 0.8, "hd95": 3.0, "iou": 0.7} if segmentation else
                {"auroc": 0.7, "accuracy": 0.6, "f1_macro": 0.5},
                sample_ids=[f"s{i}" for i in range(20)], test_targets=None if segmentation else y,
                test_scores=None if segmentation else y * 0.8 + 0.1, extra_metrics={},
                sample_metrics=[{"sample_id": f"s{i}", "dice": 0.8, "hd95": 3.0} for i in range(20)]
                if segmentation else None))
    monkeypatch.setattr(radbench.cli.out, "width", 100)
    result = cli("results", tmp_path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    for name in names:
        assert name in result.stdout, name  # never cut, never folded at this width
    assert "…" not in result.stdout
    text = result.stdout
    classification, segmentation = text.index("classification: test metrics"), text.index("segmentation: test metrics")
    assert "auroc" in text[classification:segmentation] and "dice" not in text[classification:segmentation]
    assert "dice" in text[segmentation:] and "auroc" not in text[segmentation:]
    assert "iou" not in text and "f1_macro" not in text  # headline columns only, by default
    wide = cli("results", tmp_path, "--wide").stdout
    assert "iou" in wide and "f1_macro" in wide


def test_every_option_of_every_command_says_what_it_does():
    import typer

    from radbench.cli import app

    missing = []
    for name, command in typer.main.get_command(app).commands.items():
        for sub, leaf in (getattr(command, "commands", None) or {None: command}).items():
            missing += [f"{name} {sub or ''} {p.name}" for p in leaf.params
                        if p.name != "help" and not getattr(p, "help", None)]
    assert missing == []


def test_version(cli):
    from radbench import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith(f"radbench {__version__}")


def test_a_run_says_how_far_the_whole_study_is_and_roughly_how_long_is_left(tmp_path, pneumonia_npz, cli):
    import re

    study = write_study(tmp_path, tiny_study(tmp_path, _datasets(pneumonia_npz), [{"knn": {"k": [3]}}],
                                             seeds=[0, 1]))
    text = " ".join(cli("run", study).stderr.split())
    assert re.search(r"study: 1 of 2 jobs done \(\d+s this run, about \d+s left\)", text)
    assert "study: 2 of 2 jobs done" in text
    log = (tmp_path / "out" / "run.log").read_text()
    assert "study: 2 of 2 jobs done" in log


def test_study_progress_counts_stored_jobs_as_done_and_estimates_from_the_jobs_run():
    from radbench.progress import StudyProgress

    progress = StudyProgress(10)
    progress.skipped(4)
    line = progress.finished(30.0)
    assert line.startswith("study: 5 of 10 jobs done") and line.endswith("about 2m30s left)")
    # a finished study plus one protocol: the stored jobs of units not prepared yet count as done from the start
    progress = StudyProgress(40, {"unit:a|d": 9, "unit:b|d": 9, "unit:c|d": 9, "unit:e|d": 9})
    progress.skipped(9, "unit:a|d")
    line = progress.finished(10.0)
    assert line.startswith("study: 37 of 40 jobs done") and line.endswith("about 30s left)")


def test_the_time_left_uses_each_kind_of_jobs_own_rate():
    """A fast kNN must not stand for slow fine-tuning: each kind's jobs still to run at that kind's measured mean
    (a kind not timed yet at the mean of every job so far); jobs that will not run leave the estimate."""
    from radbench.progress import StudyProgress

    progress = StudyProgress(8, kinds={"knn": 4, "finetune": 4})
    assert progress.finished(1.0, "knn").endswith("about 7s left)")  # 3 kNN x 1 s + 4 untimed x 1 s
    assert progress.finished(100.0, "finetune").endswith("about 5m03s left)")  # 3 x 1 s + 3 x 100 s
    progress.skipped(3, "unit:lost|d")  # their backbone could not be had: counted as settled, and out of the time
    progress.dropped({"finetune": 3})
    assert progress.finished(1.0, "knn").endswith("about 2s left)")
    # units still to prepare (data read, features loaded) count at this run's mean preparation time
    progress = StudyProgress(4, kinds={"knn": 4}, units=3)
    progress.unit_prepared(20.0, True)
    assert progress.finished(1.0, "knn").endswith("about 43s left)")  # 3 jobs x 1 s + 2 units x 20 s


def test_report_says_what_it_is_doing(tmp_path, pneumonia_npz, cli):
    study = write_study(tmp_path, tiny_study(tmp_path, _datasets(pneumonia_npz), [{"knn": {"k": [3]}}]))
    assert cli("run", study).exit_code == 0
    result = cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0")
    assert "report: leaderboard of 1 jobs" in result.stderr and "report: dataset p (1 of 1" in result.stderr


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s["backbones"].__setitem__(0, {"name": "dinov2_vit14", "weights": "none"}),
     "unknown backbone 'dinov2_vit14' (did you mean 'dinov2_vits14'?)"),
    (lambda s: s["datasets"][0].__setitem__("label_columns", ["Efusion"]),
     "column 'Efusion' not found (did you mean 'Effusion'?)"),
    (lambda s: s["datasets"][0].__setitem__("label_colums", ["Effusion"]),
     "label_colums: unknown key (did you mean `label_columns`?)"),
])
def test_unknown_names_keys_and_columns_suggest_the_near_one(tmp_path, cli, nih_labels, mutate, expected):
    dataset = {"name": "nih", "adapter": "csv", "path": str(nih_labels), "image_column": "Image Index",
               "label_columns": ["Effusion"], "patient_column": "Patient ID"}
    study = tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}])
    mutate(study)
    result = cli("plan", write_study(tmp_path, study))
    assert result.exit_code == 2 and expected in " ".join(result.stderr.split()), result.stderr


def test_a_library_message_is_shortened_at_a_sentence_or_word_never_mid_word():
    from radbench.backbones.hf_family import _first_sentence

    text = ("Can't load image processor for 'x'. If you were trying to load it from 'https://huggingface.co/models', "
            "make sure you don't have a local directory with the same name.")
    assert _first_sentence(text) == "Can't load image processor for 'x'."
    long = "word " * 200
    shortened = _first_sentence(long)
    assert shortened.endswith("word …") and len(shortened) <= 402


def test_the_weights_column_names_hub_revision_checkpoint_hash_or_random_initialisation():
    import json

    from radbench.report.measured import backbone_rows

    configs = {
        "hubbed": {"name": "dinov2_vits14", "weights": "hub", "identity": {
            "family": "timm", "model_id": "vit_small_patch14_dinov2.lvd142m", "weights": "hub",
            "hub_id": "timm/vit_small_patch14_dinov2.lvd142m", "hub_revision": "0123456789abcdef"}},
        "mine": {"name": "timm:resnet18", "weights": "/models/r18.pt", "identity": {
            "family": "timm", "model_id": "resnet18", "weights": "path", "checkpoint_sha256": "ab" * 32}},
        "random": {"name": "timm:resnet18", "weights": "none", "identity": {"weights": "none"}},
    }
    jobs = pd.DataFrame([{"backbone": b, "config": json.dumps({"backbone": c})} for b, c in configs.items()])
    rows = backbone_rows(jobs).set_index("backbone")
    assert rows.weights["hubbed"] == "hub timm/vit_small_patch14_dinov2.lvd142m @ 0123456789"
    assert rows.weights["mine"] == "checkpoint /models/r18.pt (sha256 abababababab)"
    assert rows.weights["random"].startswith("random initialisation")
    assert rows.random_init.tolist() == [False, False, True]


def test_a_saved_figure_holds_its_title_colour_bar_label_and_rotated_names(tmp_path):
    """Long backbone names and a colour-bar label spill past a small heatmap's canvas: the saved PNG must hold
    everything drawn (it used to be cut at the canvas edge)."""
    from PIL import Image

    from radbench.report import figures, plots

    names = ["timm:vit_tiny_patch16_224", "hf:facebook/dinov2-small"]
    matrix = pd.DataFrame([[1.0, 0.4], [0.4, 1.0]], index=names, columns=names)
    figure = plots.cka_heatmap(matrix, "shenzhen: linear CKA between backbones, a long title")
    figure.canvas.draw()
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches, everything drawn
    canvas = figure.get_size_inches()
    assert drawn.width > canvas[0] or drawn.height > canvas[1] or drawn.x0 < 0 or drawn.y0 < 0  # it spills
    png, _ = figures.save(figure, tmp_path, "cka")
    width, height = Image.open(png).size
    assert width >= drawn.width * 120 - 2 and height >= drawn.height * 120 - 2  # dpi 120


def test_a_backbone_whose_weights_cannot_be_had_fails_its_own_jobs_and_the_others_run(tmp_path, cli, pneumonia_npz,
                                                                                       monkeypatch):
    """Hub weights unreachable (HF_HUB_OFFLINE, as without network): that backbone's jobs are recorded as failed
    with one line, the backbone after it still runs, the exit says a job failed, and `status` shows it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))  # nothing cached: the hub must be asked
    study = tiny_study(tmp_path, _datasets(pneumonia_npz), [{"knn": {"k": [3]}}])
    study["backbones"].insert(0, {"name": "timm:vit_tiny_patch16_224"})  # hub weights, first in line
    path = write_study(tmp_path, study)
    result = cli("run", path)
    assert result.exit_code == 1, result.output
    assert "backbone unavailable, its jobs recorded as failed; the run goes on" in " ".join(result.stderr.split())
    import radbench

    stored = radbench.load(tmp_path / "out").jobs
    assert list(stored.backbone.unique()) == ["timm:test_vit"]
    status = radbench.load(tmp_path / "out").status
    failed = status[status.backbone == "timm:vit_tiny_patch16_224"]
    assert int(failed.failed.sum()) == 1 and "DownloadError" in str(failed.error.iloc[0])


def _tables_whole(text: str, width: int) -> list[str]:
    """Table lines cut at the right edge (a top or bottom border without its corner) or longer than the terminal
    (a free line of text may run on: the terminal wraps it)."""
    bad = [line for line in text.splitlines() if len(line) > width and line.lstrip()[:1] in set("┏┃┡│└")]
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.startswith("┏") and not stripped.endswith("┓") or \
                stripped.startswith("└") and not stripped.endswith("┘"):
            bad.append(line)
    return bad


@pytest.mark.parametrize("width", [80, 100, 120])
def test_status_and_list_fit_the_terminal_whole(tmp_path, cli, monkeypatch, width):
    """At 80, 100 and 120 columns no table is cut at the right edge; backbone names stay whole (copied into
    studies); status cites a long error by number and prints it whole under the table."""
    import radbench.cli
    from radbench.backbones import BACKBONES
    from radbench.results import ResultsStore

    store = ResultsStore(tmp_path / "results.sqlite")
    store.plan_units("s", [("timm:vit_tiny_patch16_224", "pneumonia")])
    store.plan_jobs("timm:vit_tiny_patch16_224", "pneumonia", [("k1", "knn", 0, 0), ("k2", "linear", 0, 0)])
    error = "DownloadError: could not download hub weights for backbone 'timm:vit_tiny_patch16_224' " + "x" * 200
    store.record_failure("k1", "timm:vit_tiny_patch16_224", "pneumonia", "knn", 0, 0, error)
    monkeypatch.setattr(radbench.cli.out, "width", width)
    status = cli("status", tmp_path)
    assert status.exit_code == 0 and not _tables_whole(status.stdout, width), status.stdout
    assert "[1] DownloadError" in status.stdout and error in status.stdout.replace("\n", "")
    for what in ("backbones", "datasets", "protocols"):
        shown = cli("list", what)
        assert shown.exit_code == 0 and not _tables_whole(shown.stdout, width), (what, shown.stdout)
    names = cli("list", "backbones").stdout
    assert all(name in names for name in BACKBONES) and "--wide" in names
    assert "split_fractions=(0.7, 0.1, 0.2)" in cli("list", "datasets").stdout.replace("\n", "")


def test_the_quickstarts_stated_cost_is_the_measured_one():
    """The README and the banner quote benchmarks/quickstart_time.py's last measurement, not a hand-written guess."""
    import json
    from pathlib import Path

    from radbench.quickstart import measured_cost

    root = Path(__file__).resolve().parents[1]
    timing = json.loads((root / "radbench" / "quickstart_timing.json").read_text())
    readme = " ".join((root / "README.md").read_text().split())
    assert (f"about {timing['cpu_minutes']:g} CPU-minutes: {timing['wall_minutes']:g} min wall on {timing['cores']} "
            f"cores at load {timing['load_1min_before']:g}, measured by `python benchmarks/quickstart_time.py`") in readme
    assert f"about {timing['cpu_minutes']:g} CPU-minutes" in measured_cost() and timing["measured"] in measured_cost()


def test_plan_estimates_a_never_run_backbone_from_its_size(tmp_path, cli, pneumonia_npz):
    """No cached entry to learn a rate from: the extraction estimate comes from the backbone's FLOPs (counted on
    the meta device), and a larger backbone is estimated slower."""
    import re

    study = tiny_study(tmp_path, _datasets(pneumonia_npz), [{"knn": {"k": [3]}}], image_size=64)
    study["backbones"].append({"name": "timm:vit_small_patch16_224", "weights": "none"})
    result = cli("plan", write_study(tmp_path, study))
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    sizes = {name: float(value) for name, value in
             re.findall(r"(timm:\S+) .*?\(size: ([0-9.e+-]+) GFLOP/img\)", text.replace("│", " "))}
    assert set(sizes) == {"timm:test_vit", "timm:vit_small_patch16_224"}, text
    # ViT-S/16 at 64 px: 16 patches + CLS through 12 blocks of width 384 — about 2 x 21.7 M params x 17 tokens
    assert 0.5e9 < sizes["timm:vit_small_patch16_224"] * 1e9 < 1.2e9
    assert sizes["timm:vit_small_patch16_224"] > 50 * sizes["timm:test_vit"]


def test_a_timm_architecture_is_probed_once_then_read_from_the_users_cache(tmp_path, monkeypatch):
    """The LoRA-target and block checks read a timm architecture from the user's cache after the first probe (no
    timm import on later plans); what is read back equals what was probed."""
    from radbench.backbones import architecture as arch
    from radbench.backbones.base import BackboneConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    arch._cached.cache_clear()
    arch._probe.cache_clear()
    cfg = BackboneConfig(name="timm:test_vit", weights="none")
    probed = arch.architecture(cfg, 64)
    assert probed is not None and probed.depth and probed.flops_per_image
    assert list(tmp_path.glob("radbench/architectures-timm*-torch*.json"))
    monkeypatch.setattr(arch, "_probe", lambda *a: (_ for _ in ()).throw(AssertionError("probed again")))
    arch._cached.cache_clear()
    assert arch.architecture(cfg, 64) == probed
    arch._cached.cache_clear()


def test_the_shipped_architecture_table_is_what_a_probe_finds_now():
    """architectures.json (regenerate: `python -m radbench.backbones.architecture`) equals a live probe of every
    zoo timm model and timm test model with the installed timm, so a stale table fails here."""
    import json

    from radbench.backbones import architecture as arch
    from radbench.backbones.shipped import SHIPPED

    assert json.loads(SHIPPED.read_text()) == arch.shipped_table()


def test_checks_of_a_named_model_read_the_shipped_table_without_probing(tmp_path, monkeypatch):
    import json

    from radbench.backbones import BackboneConfig, shipped
    from radbench.backbones import architecture as arch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    arch._cached.cache_clear()
    monkeypatch.setattr(arch, "_probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    found = arch.architecture(BackboneConfig(name="dinov2_vits14", weights="none"), 224, flops=False)
    assert found.depth == 12 and found.lora_missing(["qkv", "query"]) == ["query"]
    assert arch.architecture(BackboneConfig(name="timm:test_vit.r160_in1k", weights="none"), 32, flops=False) \
        == arch._from_row(json.loads(shipped.SHIPPED.read_text())["models"]["test_vit"])
    # a model changed by its kwargs, or a table made with another timm minor version, is probed instead
    with pytest.raises(AssertionError, match="probed"):
        arch.architecture(BackboneConfig(name="dinov2_vits14", weights="none", model_kwargs={"depth": 2}), 224,
                          flops=False)
    shipped.shipped_models.cache_clear()
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path / "old.json")
    (tmp_path / "old.json").write_text(json.dumps({"timm": "0.9", "models": {"test_vit": {}}}))
    with pytest.raises(AssertionError, match="probed"):
        arch.architecture(BackboneConfig(name="timm:test_vit", weights="none"), 32, flops=False)
    shipped.shipped_models.cache_clear()

"""The command line: quickstart (offline), list, results."""

from __future__ import annotations

import io

import pandas as pd
import pytest


def test_quickstart_offline_with_local_data(tmp_path, cli, pneumonia_npz):
    result = cli("quickstart", "--offline", "--data", pneumonia_npz, "--backbone", "timm:test_vit",
                 "--image-size", "32", "--limit", "100", "--output-dir", tmp_path / "qs")
    assert result.exit_code == 0, result.stderr
    assert "RANDOM weights" in result.stderr and "meaningless" in result.stderr
    assert "knn" in result.stdout and "linear" in result.stdout and "logreg" in result.stdout
    assert str(tmp_path / "qs" / "results.sqlite") in result.stdout.replace("\n", "")
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "qs", "--csv").stdout))
    assert set(rows.protocol) == {"knn", "linear", "logreg"}
    said = " ".join(result.stderr.split())
    assert "up to 300 PneumoniaMNIST images" in said and "CPU-minutes" in said  # what it will do, how long
    assert f"next: radbench report {tmp_path / 'qs'}" in said  # and where to go next


def test_the_quickstart_default_fits_two_cpu_minutes():
    """600 images through ViT-S/14 at 224 px take about 1.5 CPU-minutes here (the closing note has the
    measurement); the default must not creep back to the 1200 images that took 2.9."""
    import typer

    from radbench.cli import app

    quickstart = typer.main.get_command(app).commands["quickstart"]
    defaults = {p.name: p.default for p in quickstart.params}
    assert defaults["limit"] * 3 <= 600 and defaults["image_size"] <= 224


def test_quickstart_offline_without_data_explains(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = cli("quickstart", "--offline", "--output-dir", tmp_path / "qs")
    assert result.exit_code == 2 and "--offline needs the data on disk: pass --data PATH" in result.stderr


def test_quickstart_without_network_says_how_to_run_offline(tmp_path, cli, monkeypatch):
    """medmnist's own download error spans a dozen lines; the user gets one line and the offline command."""
    import medmnist

    def no_network(*args, **kwargs):
        raise RuntimeError("Automatic download failed! Please download pneumoniamnist.npz manually.\n"
                           "    1. Check your network connection: \n        https://github.com/MedMNIST/MedMNIST/\n"
                           "    2. Download: \n        https://zenodo.org/records/1/files/pneumoniamnist.npz\n")

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(medmnist, "PneumoniaMNIST", no_network)
    result = cli("quickstart", "--output-dir", tmp_path / "qs")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 2, result.stderr
    assert "could not download MedMNIST 'pneumoniamnist'" in lines[0]
    assert "https://zenodo.org/records/1/files/pneumoniamnist.npz" in lines[0]
    assert "radbench quickstart --offline --data" in lines[1]


def test_list_commands(cli):
    backbones = cli("list", "backbones").stdout
    assert "dinov2_vitg14_reg" in backbones and "timm:<model>" in backbones
    assert "csv" in cli("list", "datasets").stdout
    protocols = cli("list", "protocols").stdout
    assert "knn" in protocols and "linear" in protocols and "logreg" in protocols


def test_results_keep_configurations_apart_after_an_edited_rerun(tmp_path, cli, pneumonia_npz):
    """Editing a protocol and rerunning into the same output_dir must not average old and new numbers."""
    from tests.conftest import tiny_study, write_study

    dataset = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    first = tiny_study(tmp_path, dataset, [{"linear": {"epochs": 2, "lr": [0.01]}}], seeds=[0, 1])
    assert cli("run", write_study(tmp_path, first)).exit_code == 0
    edited = tiny_study(tmp_path, dataset, [{"linear": {"epochs": 2, "lr": [0.01], "normalize": "standard"}}])
    assert cli("run", write_study(tmp_path, edited)).exit_code == 0

    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "out", "--csv").stdout), keep_default_na=False)
    auroc = rows[rows.metric == "auroc"]
    assert sorted(auroc.setting) == ["normalize=none", "normalize=none", "normalize=standard"]
    table = cli("results", tmp_path / "out").stdout
    assert "linear (normalize=none)" in table and "linear (normalize=standard)" in table

    alone = tiny_study(tmp_path / "other", dataset, [{"linear": {"epochs": 2, "lr": [0.01]}}], seeds=[0, 1])
    assert cli("run", write_study(tmp_path / "other", alone)).exit_code == 0
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "other" / "out", "--csv").stdout),
                       keep_default_na=False)
    assert set(rows.setting) == {""}  # one configuration: nothing to tell apart

    from radbench.results import ResultsStore, summary

    table = summary(ResultsStore(tmp_path / "other" / "out" / "results.sqlite"))  # what `radbench results` shows
    for cost in ("trainable_params", "train_seconds", "infer_ms_per_image", "peak_mem_mb"):
        assert table[cost].item() == pytest.approx(rows[rows.metric == cost].value.astype(float).mean())
    assert table.trainable_params.item() == 2 * 64 + 2  # a linear head: 64-d CLS -> 2 classes


def test_single_class_test_split_is_said_loudly_and_the_table_shows_why(tmp_path, cli):
    import numpy as np
    from PIL import Image

    from tests.conftest import tiny_study, write_study

    rows = ["path,label,split"]
    for i in range(24):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        split = "train" if i < 14 else "val" if i < 19 else "test"
        rows.append(f"{i}.png,{'no' if split == 'test' else ['no', 'yes'][i % 2]},{split}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    dataset = {"name": "one", "adapter": "csv", "path": str(tmp_path / "labels.csv"), "image_column": "path",
               "label_columns": ["label"], "split_column": "split", "class_names": ["no", "yes"]}
    result = cli("run", write_study(tmp_path, tiny_study(tmp_path, [dataset], [{"knn": {"k": [3]}}], seeds=[0, 1])))
    assert result.exit_code == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert "warning: dataset one: the test split holds one class only (no): its AUROC is undefined" in warning
    table = " ".join(cli("results", tmp_path / "out").stdout.split())
    assert "- (test has one class)" in table
    assert "(same every run)" in table  # kNN on fixed features: two seeds, one number


def test_a_train_split_of_one_class_is_a_data_error_before_any_model(tmp_path, cli):
    """All labels 1 (e.g. the first rows of a sorted file): one line naming the dataset and split, exit 2, instead
    of every job failing with an IndexError."""
    import numpy as np
    from PIL import Image

    from tests.conftest import tiny_study, write_study

    rows = ["path,label"]
    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,1")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    dataset = {"name": "ones", "adapter": "csv", "path": str(tmp_path / "labels.csv"), "label_columns": ["label"]}
    result = cli("plan", write_study(tmp_path, tiny_study(tmp_path, [dataset], [{"linear": {}}])))
    assert result.exit_code == 2
    assert "dataset ones: the train split holds one class only (1): nothing to learn from" in " ".join(
        result.stderr.split())


def test_results_split_must_be_test_or_val(tmp_path, cli):
    result = cli("results", tmp_path, "--split", "bogus")
    assert result.exit_code == 2 and "Invalid value for '--split'" in result.stderr and "'bogus'" in result.stderr


def test_extract_takes_runs_data_and_shrink_options_and_the_run_finds_its_cache(tmp_path, pneumonia_npz, cli):
    from tests.conftest import tiny_study, write_study

    study = write_study(tmp_path, tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist",
                                                          "path": str(pneumonia_npz)}], [{"knn": {"k": [3]}}]))
    options = ["--limit", "15", "--output-dir", str(tmp_path / "elsewhere"), "--image-size", "32"]
    extracted = cli("extract", study, *options)
    assert extracted.exit_code == 0, extracted.stderr
    assert (tmp_path / "elsewhere" / "features").is_dir() and not (tmp_path / "out").exists()
    ran = cli("run", study, *options)
    assert ran.exit_code == 0, ran.stderr
    assert "cache hit" in ran.stderr and "extracted features for 0 images" in " ".join(ran.stderr.split())

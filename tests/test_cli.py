"""The command line: quickstart (offline), list, results."""

from __future__ import annotations

import io

import pandas as pd


def test_quickstart_offline_with_local_data(tmp_path, cli, pneumonia_npz):
    result = cli("quickstart", "--offline", "--data", pneumonia_npz, "--backbone", "timm:test_vit",
                 "--image-size", "32", "--limit", "100", "--output-dir", tmp_path / "qs")
    assert result.exit_code == 0, result.stderr
    assert "RANDOM weights" in result.stderr and "meaningless" in result.stderr
    assert "knn" in result.stdout and "linear" in result.stdout and "logreg" in result.stdout
    assert str(tmp_path / "qs" / "results.sqlite") in result.stdout.replace("\n", "")
    rows = pd.read_csv(io.StringIO(cli("results", tmp_path / "qs", "--csv").stdout))
    assert set(rows.protocol) == {"knn", "linear", "logreg"}


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

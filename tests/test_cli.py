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


def test_list_commands(cli):
    backbones = cli("list", "backbones").stdout
    assert "dinov2_vitg14_reg" in backbones and "timm:<model>" in backbones
    assert "csv" in cli("list", "datasets").stdout
    protocols = cli("list", "protocols").stdout
    assert "knn" in protocols and "linear" in protocols and "logreg" in protocols

"""Feedback in under a second: --help, `list` and a study with config errors never import the heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "timm", "sklearn", "pandas", "scipy", "transformers", "peft", "monai")

PROBE = """
import json, sys
from typer.testing import CliRunner
from radbench.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"exit": result.exit_code, "heavy": heavy, "stderr": result.stderr}}))
"""


def _probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_list_import_no_heavy_library():
    for args in (["--help"], ["list", "backbones"], ["list", "datasets"], ["list", "protocols"]):
        probe = _probe(*args)
        assert probe["exit"] == 0 and probe["heavy"] == [], (args, probe)


def test_config_errors_come_back_before_any_heavy_import(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("name: s\noutput_dir: out\nbackbones: [{name: dinov2_vits14, weigths: none}]\n"
                     "datasets: [{name: d, adapter: medmnist, path: missing.npz}]\nprotocols: [{knn: {k: [0]}}]\n")
    probe = _probe("run", str(study))
    assert probe["exit"] == 2 and probe["heavy"] == [], probe
    assert "weigths: unknown key" in probe["stderr"] and "missing.npz" in probe["stderr"]


def test_a_pretrain_config_error_comes_back_before_any_heavy_import(tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text("name: p\noutput_dir: out\nmethod: dinov3\nbackbone: {name: timm:test_vit, weights: none}\n"
                      "data: [{adapter: folder, path: missing-folder}]\n")
    probe = _probe("pretrain", str(config))
    assert probe["exit"] == 2 and probe["heavy"] == [], probe
    assert "method" in probe["stderr"], probe


def test_plan_reports_config_errors_and_missing_extras_before_any_heavy_import(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("name: s\noutput_dir: out\nbackbones: [{name: dinov2_vits14, weights: none}]\n"
                     "datasets: [{name: d, adapter: csv, path: missing.csv, image_column: path, label_colums: [a]}]\n"
                     "protocols: [{knn: {k: [3]}}]\n")
    probe = _probe("plan", str(study))
    assert probe["exit"] == 2 and probe["heavy"] == [], probe
    assert "did you mean `label_columns`?" in probe["stderr"]

"""A misspelt study key, protocol name, protocol key, adapter or metric is one line that names the nearest right one."""

from __future__ import annotations

from tests.conftest import write_study


def test_misspellings_name_the_nearest_right_word(tmp_path, pneumonia_npz, cli):
    study = {"name": "s", "output_dir": str(tmp_path / "out"), "protocol": [],
             "backbones": [{"name": "timm:test_vit", "weights": "none"}],
             "datasets": [{"name": "d", "adapter": "mednist", "path": str(pneumonia_npz)}],
             "protocols": ["lienar", {"knn": {"kk": [3]}}, {"knn": {"selection_metric": "aurco"}}]}
    result = cli("plan", write_study(tmp_path, study))
    lines = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert "protocol: unknown key (did you mean `protocols`?)" in lines
    assert "datasets[0].adapter: unknown adapter 'mednist' (did you mean 'medmnist'?)" in lines
    assert "protocols[0]: unknown protocol 'lienar' (did you mean 'linear'?)" in lines
    assert "protocols[1].knn.kk: unknown key (did you mean `k`?)" in lines
    assert "protocols[2].knn.selection_metric: unknown metric 'aurco' (did you mean 'auroc'?)" in lines


def test_a_study_file_given_for_its_output_folder_is_pointed_at_the_folder(tmp_path, pneumonia_npz, cli):
    study = write_study(tmp_path, {"name": "s", "output_dir": str(tmp_path / "runs" / "s"),
                                   "backbones": [{"name": "timm:test_vit", "weights": "none"}],
                                   "datasets": [{"name": "d", "adapter": "medmnist", "path": str(pneumonia_npz)}],
                                   "protocols": ["knn"]})
    for command in ("report", "results", "status"):
        result = cli(command, study)
        assert result.exit_code == 2
        assert f"is a study file; give its output folder: {tmp_path / 'runs' / 's'}" in " ".join(result.stderr.split())

"""Bad input gives one clear message naming the key, file or row, and a non-zero exit — before any work."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import tiny_study, write_study


def medmnist(path, **extra):
    return {"name": "pneumonia", "adapter": "medmnist", "path": str(path), "limit": 60, **extra}


def nih_csv(tmp_path, nih_labels, mutate=None, name="labels.csv"):
    table = pd.read_csv(nih_labels)
    table["Image Index"] = [str(nih_labels.parent / n) for n in table["Image Index"]]
    if mutate:
        table = mutate(table)
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def csv_dataset(path, **extra):
    return {"name": "nih", "adapter": "csv", "path": str(path), "image_column": "Image Index",
            "label_columns": ["Effusion", "Infiltration"], "patient_column": "Patient ID", **extra}


def run_expecting_error(cli, study_path, *expected):
    result = cli("run", study_path)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "jobs:" not in result.stderr  # stopped before any job ran
    return result.stderr


def test_unknown_yaml_key(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], seedz=[1])
    run_expecting_error(cli, write_study(tmp_path, study), "study.yaml: seedz: unknown key")


def test_unknown_key_inside_a_protocol(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], protocols=[{"linear": {"epoch": 3}}])
    run_expecting_error(cli, write_study(tmp_path, study), "protocols[0].linear.epoch: unknown key")


def test_wrong_type(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], protocols=[{"knn": {"k": [10, "twenty"]}}])
    run_expecting_error(cli, write_study(tmp_path, study), "protocols[0].knn.k[1]", "valid integer")


def test_missing_data_file(tmp_path, cli):
    study = tiny_study(tmp_path, [medmnist(tmp_path / "nowhere.npz")])
    run_expecting_error(cli, write_study(tmp_path, study), "datasets[0].path: file not found", "nowhere.npz")


def test_missing_study_file(tmp_path, cli):
    result = cli("run", tmp_path / "absent.yaml")
    assert result.exit_code == 2 and "absent.yaml: study file not found" in result.stderr


def test_invalid_yaml_syntax(tmp_path, cli):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nbackbones: [timm:test_vit\n")
    run_expecting_error(cli, path, "invalid YAML", "line")


def test_corrupt_npz(tmp_path, cli, pneumonia_npz):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(pneumonia_npz.read_bytes()[:5000])
    study = tiny_study(tmp_path, [medmnist(broken)])
    run_expecting_error(cli, write_study(tmp_path, study), "broken.npz: cannot read npz archive")


def test_npz_without_medmnist_keys(tmp_path, cli):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros((3, 8, 8)))
    study = tiny_study(tmp_path, [medmnist(path)])
    run_expecting_error(cli, write_study(tmp_path, study), "other.npz: not a MedMNIST npz")


def test_unknown_backbone(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)])
    study["backbones"] = [{"name": "dinov3_vits14"}, {"name": "timm:not_a_model"}]
    stderr = run_expecting_error(cli, write_study(tmp_path, study), "backbones[0].name: unknown backbone 'dinov3_vits14'")
    assert "backbones[1].name: unknown timm model 'not_a_model'" in stderr


def test_unknown_protocol_and_adapter(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [{"name": "x", "adapter": "dicomdir", "path": str(pneumonia_npz)}],
                       protocols=[{"svm": {}}])
    stderr = run_expecting_error(cli, write_study(tmp_path, study), "datasets[0].adapter: unknown adapter 'dicomdir'")
    assert "protocols[0]: unknown protocol 'svm'" in stderr


def test_unknown_feature_type(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], features=["cls", "gem"])
    run_expecting_error(cli, write_study(tmp_path, study), "features", "unknown feature type 'gem'")


def test_empty_class_after_limit(tmp_path, cli, nih_labels):
    # Hernia has 8 positive images; a limit of 3 per split cannot keep one in train
    path = nih_csv(tmp_path, nih_labels)
    study = tiny_study(tmp_path, [csv_dataset(path, label_columns=["Hernia", "Infiltration"], limit=3)])
    run_expecting_error(cli, write_study(tmp_path, study), "has no positive samples in the train split after limit=3")


def test_nan_in_single_label_column(tmp_path, cli, nih_labels):
    def blank_row_5(table):
        table["Effusion"] = table["Effusion"].astype(float)
        table.loc[5, "Effusion"] = np.nan
        return table

    path = nih_csv(tmp_path, nih_labels, blank_row_5)
    study = tiny_study(tmp_path, [csv_dataset(path, label_columns=["Effusion"])])
    run_expecting_error(cli, write_study(tmp_path, study), "labels.csv: line 7: missing label in single-label column 'Effusion'")


def test_csv_missing_label_column(tmp_path, cli, nih_labels):
    path = nih_csv(tmp_path, nih_labels)
    study = tiny_study(tmp_path, [csv_dataset(path, label_columns=["Effusion", "No Finding"])])
    run_expecting_error(cli, write_study(tmp_path, study), "labels.csv: column 'No Finding' not found")


def test_label_value_outside_schema(tmp_path, cli, nih_labels):
    def set_two(table):
        table.loc[10, "Infiltration"] = 2
        return table

    path = nih_csv(tmp_path, nih_labels, set_two)
    study = tiny_study(tmp_path, [csv_dataset(path)])
    run_expecting_error(cli, write_study(tmp_path, study), "line 12: column 'Infiltration' has value '2'")


def test_missing_image_file_names_the_row(tmp_path, cli, nih_labels):
    def break_path(table):
        table.loc[3, "Image Index"] = "/no/such/image.png"
        return table

    path = nih_csv(tmp_path, nih_labels, break_path)
    study = tiny_study(tmp_path, [csv_dataset(path)])
    run_expecting_error(cli, write_study(tmp_path, study), "labels.csv: line 5: image file not found: /no/such/image.png")


def test_bad_split_value(tmp_path, cli, nih_labels):
    def add_split(table):
        table["split"] = "train"
        table.loc[2, "split"] = "trian"
        return table

    path = nih_csv(tmp_path, nih_labels, add_split)
    study = tiny_study(tmp_path, [csv_dataset(path, split_column="split")])
    run_expecting_error(cli, write_study(tmp_path, study), "line 4: split value 'trian'")


def test_patient_in_two_splits(tmp_path, cli, nih_labels):
    def leaky(table):
        table["split"] = np.where(np.arange(len(table)) % 2 == 0, "train", "test")
        return table  # patient 13 has 6 images, now spread over train and test

    path = nih_csv(tmp_path, nih_labels, leaky)
    study = tiny_study(tmp_path, [csv_dataset(path, split_column="split")])
    run_expecting_error(cli, write_study(tmp_path, study), "patient '13' appears in both", "leakage")


def test_corrupt_image_file(tmp_path, cli, nih_labels):
    table = pd.read_csv(nih_labels)
    images = tmp_path / "images"
    images.mkdir()
    for name in table["Image Index"]:
        shutil.copy(nih_labels.parent / name, images / name)
    (images / table["Image Index"][0]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    table.to_csv(images / "labels.csv", index=False)
    study = tiny_study(tmp_path, [csv_dataset(images / "labels.csv")])
    run_expecting_error(cli, write_study(tmp_path, study), f"{table['Image Index'][0]}: cannot decode image")


def test_checkpoint_that_does_not_fit(tmp_path, cli, pneumonia_npz):
    checkpoint = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, checkpoint)
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)])
    study["backbones"] = [{"name": "timm:test_vit", "weights": str(checkpoint)}]
    run_expecting_error(cli, write_study(tmp_path, study), "resnet.pth: checkpoint does not fit the model")


def test_hub_weights_without_network(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)])
    study["backbones"] = [{"name": "timm:test_vit", "weights": "hub"}]
    run_expecting_error(cli, write_study(tmp_path, study), "could not download hub weights for backbone 'timm:test_vit'",
                        "weights: none")


def test_image_size_not_a_multiple_of_patch_size(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], image_size=40)
    run_expecting_error(cli, write_study(tmp_path, study), "image_size 40 is not a multiple of its patch size 16")


def test_duplicate_names(tmp_path, cli, pneumonia_npz):
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz), medmnist(pneumonia_npz)])
    run_expecting_error(cli, write_study(tmp_path, study), "datasets: 'pneumonia' appears twice")


@pytest.mark.parametrize("command", ["results", "extract"])
def test_commands_on_missing_paths(tmp_path, cli, command):
    result = cli(command, tmp_path / "nothing")
    assert result.exit_code == 2 and "error:" in result.stderr


def test_few_shot_asking_more_patients_than_a_class_has(tmp_path, cli, pneumonia_npz):
    """Checked when the data is loaded, not after the smaller shots have already run."""
    study = tiny_study(tmp_path, [medmnist(pneumonia_npz)], [{"few_shot": {"shots": [1, 16], "repeats": 2}}])
    stderr = run_expecting_error(cli, write_study(tmp_path, study), "dataset 'pneumonia': few-shot: class 'normal' has",
                                 "fewer than 16 shots", "raise the dataset's train `limit`")
    assert not (tmp_path / "out" / "features").exists(), stderr

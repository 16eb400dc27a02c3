"""Few-shot segmentation curves: n training patients (all their images), `repeats` different draws per seed,
reproducible, drawn from the train split only; one reported point per n."""

from __future__ import annotations

import numpy as np
import pytest

import radbench
from radbench.errors import DataError
from radbench.protocols.segmentation import sample_cases
from tests.conftest import tiny_study, write_study


def test_whole_patients_reproducible_and_different_per_repeat():
    patients = np.repeat(np.array([f"p{i}" for i in range(12)]), 3)  # three slices per patient
    first = sample_cases(patients, 4, seed=0, repeat=0)
    assert np.array_equal(first, sample_cases(patients, 4, seed=0, repeat=0))
    assert len(set(patients[first])) == 4 and len(first) == 12  # every slice of each chosen patient
    draws = {tuple(sorted(set(patients[sample_cases(patients, 4, 0, r)]))) for r in range(5)}
    assert len(draws) > 1
    with pytest.raises(DataError, match="13 patients asked, the train split has 12"):
        sample_cases(patients, 13, 0, 0)


def test_a_few_shot_segmentation_curve_on_real_lungs(tmp_path, shared_data, cli):
    lungs = {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
             "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
             "split_fractions": [0.6, 0.2, 0.2]}
    protocol = {"segmentation": {"epochs": 2, "lr": [0.05], "batch_size": 3, "shots": [1, 2, "all"], "repeats": 2}}
    assert cli("run", write_study(tmp_path, tiny_study(tmp_path, [lungs], [protocol], image_size=32))).exit_code == 0
    jobs = radbench.load(tmp_path / "out").jobs
    assert sorted(jobs.protocol) == ["segmentation@1shot", "segmentation@1shot", "segmentation@2shot",
                                     "segmentation@2shot", "segmentation@all"]
    from radbench.data import ADAPTERS, load_dataset

    train = set(load_dataset(ADAPTERS.get("mask_folder").config.model_validate(lungs)).splits["train"].patient_ids)
    for job in jobs.itertuples():
        details = job.details
        if job.protocol == "segmentation@all":
            assert "patients" not in details
            continue
        assert len(details["patients"]) == int(job.protocol.split("@")[1][0]) and set(details["patients"]) <= train
    two = [tuple(d["patients"]) for p, d in zip(jobs.protocol, jobs.details) if p == "segmentation@2shot"]
    assert two[0] != two[1]  # the two repeats drew different patients

    too_many = {"segmentation": {**protocol["segmentation"], "shots": [50]}}
    result = cli("run", write_study(tmp_path / "b", tiny_study(tmp_path / "b", [lungs], [too_many])))
    assert result.exit_code == 2 and "shots up to 50 patients, the train split of 'lungs' has 6" in \
        " ".join(result.stderr.split())


def test_a_unet_from_scratch_is_one_baseline_row_beside_the_backbones(tmp_path, shared_data, cli):
    from monai.networks.nets import BasicUNet

    lungs = {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
             "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127,
             "split_fractions": [0.6, 0.2, 0.2]}
    protocols = [{"segmentation": {"epochs": 2, "lr": [0.05], "batch_size": 3}},
                 {"segmentation": {"decoder": "scratch_unet", "width": 32, "epochs": 2, "lr": [1e-3],
                                   "batch_size": 3, "name": "unet_scratch"}}]
    study = tiny_study(tmp_path, [lungs], protocols, image_size=32, seeds=[0, 1])
    study["backbones"] = [{"name": "timm:test_vit", "weights": "none", "label": "a"},
                          {"name": "timm:test_vit", "weights": "none", "label": "b", "model_kwargs": {"depth": 1}}]
    assert cli("run", write_study(tmp_path, study)).exit_code == 0
    results = radbench.load(tmp_path / "out")
    rows = results.jobs.groupby(["backbone", "protocol"]).size().to_dict()
    assert rows == {("a", "segmentation"): 2, ("b", "segmentation"): 2, ("scratch_unet", "unet_scratch"): 2}
    costs = results.costs[results.costs.backbone == "scratch_unet"].pivot_table(index="metric", values="value")
    expected = sum(p.numel() for p in BasicUNet(2, 3, 2, features=(8, 8, 16, 32, 64, 8)).parameters())
    assert costs.loc["trainable_params", "value"] == costs.loc["total_params", "value"] == expected
    dice = results.results.query("backbone == 'scratch_unet' and metric == 'dice'").value
    assert len(dice) == 2 and dice.between(0, 1).all()

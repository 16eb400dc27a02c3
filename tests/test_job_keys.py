"""Job keys are what a rerun resumes by: a change that alters them silently recomputes every stored job. This pins
the keys of one job per protocol, as radbench computed them before presets, saved models and the transformer-head
scenarios existed; change the expected values only with a deliberate, announced break of old stores."""

from __future__ import annotations

from radbench.config import parse_study
from radbench.data import load_dataset
from radbench.study.plan import plan_jobs

CLASSIFICATION = [{"knn": {"k": [5]}}, {"linear": {"epochs": 2, "lr": [0.1]}}, {"finetune": {"epochs": 1}},
                  {"lora": {}}, {"bitfit": {}}, {"progressive_freezing": {"frozen_blocks": [2]}},
                  {"transformer_head": {"epochs": 1}}, {"few_shot": {"shots": [1], "repeats": 1}},
                  {"decapitation": {"keep_blocks": [2]}}, {"logreg": {}}]
EXPECTED = ['388f4573c5c9aca71265', 'a817843674a3a26d7ebd', '84ed0053b70d3b108d71', 'bc681a35ecc23e6a41ca',
            'd053ce9b1a66459bf548', '03e9e69ee6c66d327ff0', 'd89a8cd616d63dfea40f', '2c0725096a177a18aa0e',
            '6e421fb97c1267823bdb', '3fcb6b81793964592a6f']
SEGMENTATION = [{"segmentation": {"epochs": 2}}, {"segmentation": {"decoder": "unet", "name": "u"}}]
EXPECTED_SEGMENTATION = ['c2c32e8b281dc1d28562', '53e023f50d9d3826d417']


def _keys(tmp_path, dataset, protocols):
    raw = {"name": "s", "output_dir": str(tmp_path / "out"), "seeds": [3],
           "backbones": [{"name": "timm:test_vit", "weights": "none"}], "datasets": [dataset], "protocols": protocols}
    study = parse_study(raw, tmp_path)
    return [job.key for job in plan_jobs(study, study.backbones[0], load_dataset(study.datasets[0]),
                                         "0123456789abcdef")]


def test_job_keys_stay_stable(tmp_path, pneumonia_npz, shared_data):
    dataset = {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}
    assert _keys(tmp_path, dataset, CLASSIFICATION) == EXPECTED
    lungs = {"name": "lungs", "adapter": "mask_folder", "path": str(shared_data / "cxr_lung_seg_shenzhen"),
             "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask", "mask_threshold": 127}
    assert _keys(tmp_path, lungs, SEGMENTATION) == EXPECTED_SEGMENTATION


def test_a_newer_key_set_away_from_its_default_makes_a_new_job(tmp_path, pneumonia_npz):
    dataset = {"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}
    saved = _keys(tmp_path, dataset, [{"finetune": {"epochs": 1, "save_model": True}}])
    assert saved != [EXPECTED[2]]

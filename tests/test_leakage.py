"""Tests that would catch a test-set leak. Each protocol runs twice: once as is, once with the test split's features
replaced by noise and its labels permuted. Everything chosen or scored before the test (every candidate's val
score, the choice, the val metrics) must be bit-identical; and with only the test labels permuted, the test
predictions must be bit-identical too (the refit never sees test labels). Refits are also compared with an
independent fit on exactly train+val."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from radbench.data.base import ArrayImages, LabeledDataset, Split, Task
from radbench.features.source import FeatureSource
from radbench.protocols import PROTOCOLS
from tests.test_protocols import brute_force_knn, make_inputs

PROTOCOL_CASES = [
    ("knn", {"k": [1, 5, 25]}),
    ("linear", {"epochs": 4, "lr": [0.001, 0.1], "batch_size": 32}),
    ("linear", {"epochs": 4, "lr": [0.001, 0.1], "batch_size": 32, "normalize": "standard"}),
    ("logreg", {"C": [0.001, 0.1, 10.0]}),
    ("few_shot", {"shots": [5], "head": "logreg", "head_config": {"C": [0.01, 1.0]}}),
    ("few_shot", {"shots": [5], "head": "knn", "head_config": {"k": [1, 5]}}),
    ("few_shot", {"shots": [5], "head": "linear", "head_config": {"epochs": 3, "lr": [0.01, 0.1],
                                                                   "normalize": "standard"}}),
]


def with_dataset(inputs):
    """Patients for few-shot draws: one image per patient, labels from the one-hot targets."""
    splits = {}
    for name, targets in inputs.targets.items():
        ids = np.array([f"{name}{i}" for i in range(len(targets))])
        labels = targets if inputs.task is Task.MULTILABEL else targets.argmax(1)
        splits[name] = Split(name, ids, ids, labels, ArrayImages(np.zeros((len(targets), 2, 2))))
    dataset = LabeledDataset("synthetic", inputs.task, inputs.class_names, splits, "synthetic", "official")
    return replace(inputs, dataset=dataset)


def corrupted(inputs, features: bool = True, labels: bool = True, seed: int = 99):
    """The same inputs with the test split's features replaced by noise and/or its labels permuted."""
    rng = np.random.default_rng(seed)
    base = inputs.features
    noise = rng.normal(size=base.bundle("test").shape).astype(np.float32)
    source = FeatureSource(lambda split: noise if (split == "test" and features) else base.bundle(split),
                           base.columns)
    targets = dict(inputs.targets)
    if labels:
        targets["test"] = targets["test"][rng.permutation(len(targets["test"]))]
    return replace(inputs, features=source, targets=targets)


def run(name, config, inputs):
    spec = PROTOCOLS.get(name)
    return spec.run(spec.config.model_validate(config), inputs)


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
@pytest.mark.parametrize("name,config", PROTOCOL_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PROTOCOL_CASES)])
def test_nothing_before_the_test_depends_on_the_test_split(name, config, task):
    inputs = with_dataset(make_inputs(task, missing=0.1 if task is Task.MULTILABEL else 0.0))
    clean = run(name, config, inputs)
    noisy = run(name, config, corrupted(inputs))
    assert noisy.candidates == clean.candidates  # every val score, bit for bit
    assert noisy.selected == clean.selected
    assert noisy.val_metrics == clean.val_metrics
    relabelled = run(name, config, corrupted(inputs, features=False))
    np.testing.assert_array_equal(relabelled.test_scores, clean.test_scores)  # the refit never reads test labels
    assert relabelled.test_metrics != clean.test_metrics  # (the permutation did change what the test scores)


def test_logreg_refit_equals_an_independent_fit_on_train_plus_val_multiclass():
    from sklearn.linear_model import LogisticRegression

    inputs = make_inputs(Task.MULTICLASS)
    result = run("logreg", {"C": [0.001, 0.1, 10.0]}, inputs)
    feature, C = result.selected["feature"], result.selected["C"]
    x = np.concatenate([inputs.features.get(feature, s) for s in ("train", "val")]).astype(np.float64)
    y = np.concatenate([inputs.targets[s] for s in ("train", "val")]).argmax(1)
    mean, std = x.mean(0), x.std(0)  # z-scoring by hand, not sklearn's scaler
    model = LogisticRegression(C=C, max_iter=1000, random_state=0).fit((x - mean) / std, y)
    test = inputs.features.get(feature, "test")
    np.testing.assert_allclose(result.test_scores, model.predict_proba((test - mean) / std), rtol=1e-5, atol=1e-7)


def test_few_shot_refit_uses_the_drawn_patients_only():
    """Few-shot's chosen head is refitted on its n-per-class draw alone: never on val, never on test."""
    inputs = with_dataset(make_inputs(Task.MULTICLASS))
    result = run("few_shot", {"shots": [4], "head": "knn", "head_config": {"k": [1, 3]}}, inputs)
    drawn = {p for patients in result.details["patients_per_class"].values() for p in patients}
    index = np.array([int(p.removeprefix("train")) for p in sorted(drawn)])
    feature, k = result.selected["feature"], result.selected["k"]
    expected = brute_force_knn(inputs.features.get(feature, "train")[index], inputs.targets["train"][index],
                               inputs.features.get(feature, "test"), k, 0.07)
    np.testing.assert_allclose(result.test_scores, expected, rtol=2e-5, atol=1e-9)


def test_linear_refit_trains_on_train_plus_val_only():
    """The refit equals heads trained by the same schedule on an explicit train+val concatenation."""
    from radbench.protocols.linear import LinearConfig, predict, train_heads

    inputs = make_inputs(Task.MULTICLASS)
    cfg = LinearConfig(epochs=4, lr=[0.001, 0.1], batch_size=32, normalize="standard")
    result = PROTOCOLS.get("linear").run(cfg, inputs)
    feature, lr = result.selected["feature"], result.selected["lr"]
    merged = {f: {"train": np.concatenate([inputs.features.get(f, s) for s in ("train", "val")]),
                  "val": inputs.features.get(f, "val"), "test": inputs.features.get(f, "test")}
              for f in ("cls", "mean")}
    alone = replace(inputs, features=FeatureSource.from_arrays(merged),
                    targets={**inputs.targets, "train": np.concatenate([inputs.targets[s] for s in ("train", "val")])})
    heads, scaler = train_heads(alone, cfg, [feature], [lr], ["train"], "reference")
    expected = predict(alone, heads, scaler, [feature], "test")[0, 0]
    np.testing.assert_allclose(result.test_scores, expected, rtol=1e-5, atol=1e-7)


def test_image_training_selection_ignores_the_test_split(tmp_path, pneumonia_npz):
    """Fine-tuning (and the other image-training protocols through the same selection): a study on PneumoniaMNIST
    and on a copy whose test images are noise and test labels permuted choose the same lr from the same val
    scores."""
    from radbench.config import parse_study
    from radbench.progress import Reporter
    from radbench.results import ResultsStore
    from radbench.runner import run_study
    from tests.conftest import tiny_study

    data = dict(np.load(pneumonia_npz))
    rng = np.random.default_rng(0)
    data["test_images"] = rng.integers(0, 255, data["test_images"].shape, dtype=np.uint8)
    data["test_labels"] = data["test_labels"][rng.permutation(len(data["test_labels"]))]
    noisy_npz = tmp_path / "noisy.npz"
    np.savez(noisy_npz, **data)
    protocols = [{"bitfit": {"epochs": 2, "lr": [1e-4, 1e-2], "batch_size": 16, "augment": None}}]
    stored = []
    for name, path in (("clean", pneumonia_npz), ("noisy", noisy_npz)):
        folder = tmp_path / name
        datasets = [{"name": "p", "adapter": "medmnist", "path": str(path), "limit": 48}]
        run_study(parse_study(tiny_study(folder, datasets, protocols), folder), Reporter(quiet=True))
        jobs = ResultsStore(folder / "out" / "results.sqlite").jobs()
        candidates = json.loads(jobs.candidates.iloc[0])
        for candidate in candidates:  # measured times differ from run to run; every score must not
            candidate["history"] = [{k: v for k, v in epoch.items() if not k.endswith("_seconds")}
                                    for epoch in candidate["history"]]
        val = ResultsStore(folder / "out" / "results.sqlite").metrics("val")
        stored.append((candidates, jobs.selected.iloc[0], val[val.metric.isin(["auroc", "accuracy"])].value.tolist()))
    assert len(stored[0][0]) == 2 and stored[0] == stored[1]


def _z_scored(inputs, splits):
    """Every split z-scored by hand with the statistics of `splits` only (numpy float64, per column, the unbiased
    std), independent of the protocol's Standardizer."""
    base = inputs.features
    reference = np.concatenate([base.bundle(s) for s in splits]).astype(np.float64)
    mean, std = reference.mean(0), np.maximum(reference.std(0, ddof=1), 1e-6)
    source = FeatureSource(lambda split: ((base.bundle(split) - mean) / std).astype(np.float32), base.columns)
    return replace(inputs, features=source)


def _shifted_test(inputs, shift):
    base = inputs.features
    return replace(inputs, features=FeatureSource(
        lambda split: base.bundle(split) + np.float32(shift if split == "test" else 0.0), base.columns))


LINEAR_STANDARD = {"epochs": 4, "lr": [0.001, 0.1], "batch_size": 32, "normalize": "standard"}


def _hand_scaled_refit(inputs, selected):
    """The linear refit on train+val features z-scored by hand with train+val statistics, no Standardizer."""
    from radbench.protocols.linear import LinearConfig, predict, train_heads

    scaled = _z_scored(inputs, ["train", "val"])
    cfg = LinearConfig(**{**LINEAR_STANDARD, "normalize": "none"})
    heads, unscaled = train_heads(scaled, cfg, [selected["feature"]], [selected["lr"]], ["train", "val"], "reference")
    return predict(scaled, heads, unscaled, [selected["feature"]], "test")[0, 0]


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_linear_standardises_with_train_statistics_only(task):
    """Selection on features z-scored with train statistics, the refit with train+val statistics, test features
    scaled with those same statistics: equal to a hand-made z-scoring outside radbench's Standardizer."""
    inputs = make_inputs(task)
    result = run("linear", LINEAR_STANDARD, inputs)
    selection = run("linear", {**LINEAR_STANDARD, "normalize": "none"}, _z_scored(inputs, ["train"]))
    np.testing.assert_allclose([c["val"] for c in result.candidates], [c["val"] for c in selection.candidates],
                               rtol=1e-5)
    assert result.selected == selection.selected
    np.testing.assert_allclose(result.test_scores, _hand_scaled_refit(inputs, result.selected), rtol=1e-4, atol=1e-6)


def test_a_constant_shift_of_the_test_features_moves_the_scores_as_train_statistics_imply():
    """Test features shifted by a constant: the fitted model is unchanged and sees (x + c - mean_trainval) / std;
    a per-split centring (test statistics at test time) would hide the shift."""
    inputs = make_inputs(Task.MULTICLASS)
    plain = run("linear", LINEAR_STANDARD, inputs)
    shifted_inputs = _shifted_test(inputs, 2.5)
    shifted = run("linear", LINEAR_STANDARD, shifted_inputs)
    assert shifted.selected == plain.selected
    assert np.abs(shifted.test_scores - plain.test_scores).max() > 1e-2
    # train and val unshifted: the hand-made scaling uses the same train+val statistics as before the shift
    np.testing.assert_allclose(shifted.test_scores, _hand_scaled_refit(shifted_inputs, plain.selected),
                               rtol=1e-4, atol=1e-6)

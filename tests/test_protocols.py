"""Protocols against independent references: brute-force kNN, single-head training, sklearn selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radbench.data.base import Task, labels_to_targets
from radbench.features.source import FeatureSource
from radbench.progress import Reporter
from radbench.protocols import PROTOCOLS, ProtocolInput
from radbench.protocols.knn import KnnConfig, nearest, vote
from radbench.protocols.linear import LinearConfig, LinearHeads, head_loss, logit_gradient, train_heads


def make_inputs(task: Task, seed: int = 0, n=(120, 40, 50), dims=(16, 8), num_classes=3, missing=0.0):
    """Separable-ish random features with a known signal, for two feature types."""
    rng = np.random.default_rng(seed)
    splits = dict(zip(("train", "val", "test"), n))
    features, targets = {"cls": {}, "mean": {}}, {}
    class_means = rng.normal(size=(num_classes, max(dims)))
    for name, count in splits.items():
        if task is Task.MULTILABEL:
            labels = (rng.random((count, num_classes)) < 0.4).astype(np.float32)
            signal = labels @ class_means
            labels[rng.random(labels.shape) < missing] = np.nan
        else:
            labels = rng.integers(0, num_classes, count)
            signal = class_means[labels]
        targets[name] = labels_to_targets(task, labels, num_classes)
        for d, feature_type in zip(dims, ("cls", "mean")):
            features[feature_type][name] = (signal[:, :d] + rng.normal(scale=1.5, size=(count, d))).astype(np.float32)
    return ProtocolInput(
        task=task, class_names=tuple(f"c{i}" for i in range(num_classes)),
        features=FeatureSource.from_arrays(features), targets=targets, feature_types=["cls", "mean"],
        selection_metric="auroc", seed=seed, device=torch.device("cpu"), reporter=Reporter(quiet=True),
    )


# kNN runs in float32 (GPU-friendly); exp(sim / 0.07) magnifies float32 rounding of the similarities to ~1e-6
# relative, so scores are compared at 2e-5 and the neighbour sets exactly.
KNN_RTOL = 2e-5


def brute_force_knn(bank, bank_targets, queries, k, temperature):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.zeros((len(queries), bank_targets.shape[1]))
    for i, q in enumerate(queries):
        sims = bank @ q
        top = np.argsort(-sims, kind="stable")[:k]
        weights = np.exp(sims[top] / temperature)
        for c in range(bank_targets.shape[1]):
            labels = bank_targets[top, c]
            known = ~np.isnan(labels)
            out[i, c] = (weights[known] * labels[known]).sum() / weights[known].sum() if known.any() else np.nan
    return out


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_knn_equals_brute_force(task):
    inputs = make_inputs(task, missing=0.2)
    bank, queries = inputs.features.get("cls", "train"), inputs.features.get("cls", "val")
    for k in (1, 7, 30):
        sims, idx = nearest(bank, queries, k, torch.device("cpu"))
        ours = vote(sims, idx, inputs.targets["train"], 0.07)
        reference = brute_force_knn(bank, inputs.targets["train"], queries, k, 0.07)
        known = ~np.isnan(reference)
        np.testing.assert_allclose(ours[known], reference[known], rtol=KNN_RTOL, atol=1e-9)
        normed = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        reference_idx = np.argsort(-(normed(queries) @ normed(bank).T), axis=1, kind="stable")[:, :k]
        assert (np.sort(idx.numpy(), 1) == np.sort(reference_idx, 1)).all()


def test_knn_protocol_chooses_k_on_val_and_tests_on_train_plus_val_bank():
    inputs = make_inputs(Task.MULTICLASS)
    result = PROTOCOLS.get("knn").run(KnnConfig(k=[1, 5, 25]), inputs)
    values = [c["val"] for c in result.candidates]
    assert result.candidates[int(np.argmax(values))]["params"] == result.selected
    feature, k = result.selected["feature"], result.selected["k"]
    bank = np.concatenate([inputs.features.get(feature, "train"), inputs.features.get(feature, "val")])
    bank_targets = np.concatenate([inputs.targets["train"], inputs.targets["val"]])
    expected = brute_force_knn(bank, bank_targets, inputs.features.get(feature, "test"), k, 0.07)
    np.testing.assert_allclose(result.test_scores, expected, rtol=KNN_RTOL, atol=1e-9)


def test_linear_heads_train_as_if_alone():
    """Head 0 of a 3-lr x 2-feature grid ends with the same weights as a single head trained alone."""
    inputs = make_inputs(Task.MULTICLASS)
    cfg = LinearConfig(epochs=4, lr=[0.1], batch_size=32)
    for grid in ([0.1, 0.001, 1.0], [0.001, 0.1, 1.0]):
        many, _ = train_heads(inputs, cfg, ["cls", "mean"], grid, ["train"], "grid")
        one, _ = train_heads(inputs, cfg, ["cls"], [grid[0]], ["train"], "alone")
        torch.testing.assert_close(many.head_weight(0, 0), one.head_weight(0, 0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(many.head_bias(0, 0), one.head_bias(0, 0), rtol=1e-5, atol=1e-6)
    # and the learning rates really differ per head
    assert not torch.allclose(many.head_weight(0, 0), many.head_weight(0, 1))


def test_overlapping_feature_types_stay_separate_heads():
    """cls, last2 and cls+mean share bundle columns; each head still sees only its own type's columns."""
    from radbench.backbones.layout import BundleLayout

    layout = BundleLayout("tokens", 8, 2)  # [cls of block L-1 | cls of block L | mean patch of block L]
    base = make_inputs(Task.MULTICLASS, dims=(24, 8))
    bundle = {s: base.features.get("cls", s) for s in ("train", "val", "test")}
    base.features = FeatureSource(bundle.__getitem__, layout.columns)
    cfg = LinearConfig(epochs=3, lr=[0.1], batch_size=32)
    types = ["cls", "last2", "cls+mean"]
    for rotation in range(3):
        order = types[rotation:] + types[:rotation]
        grid, _ = train_heads(base, cfg, order, [0.1, 0.01], ["train"], "grid")
        alone, _ = train_heads(base, cfg, order[:1], [0.1], ["train"], "alone")
        assert grid.head_weight(0, 0).shape == (len(layout.columns(order[0])), 3)
        torch.testing.assert_close(grid.head_weight(0, 0), alone.head_weight(0, 0), rtol=1e-5, atol=1e-6)
        # nothing leaks into the rows a head must not read
        assert (grid.weight * (1 - grid.mask)).abs().sum() == 0


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_closed_form_heads_equal_torch_sgd_with_autograd(task):
    """Reference: one nn.Linear per head, autograd, torch.optim.SGD(momentum, weight_decay), cosine schedule."""
    inputs = make_inputs(task, missing=0.25)
    x = torch.from_numpy(inputs.features.get("cls", "train"))
    y = torch.from_numpy(inputs.targets["train"])
    lrs, momentum, weight_decay, steps = [0.05, 0.5], 0.9, 1e-3, 12
    heads = LinearHeads([np.arange(x.shape[1])], x.shape[1], lrs, y.shape[1], momentum, weight_decay,
                        torch.Generator().manual_seed(0), torch.device("cpu"))
    reference = [torch.nn.Linear(x.shape[1], y.shape[1]) for _ in lrs]
    optimizers = []
    for index, (layer, lr) in enumerate(zip(reference, lrs)):
        with torch.no_grad():
            layer.weight.copy_(heads.head_weight(0, index).T)
            layer.bias.zero_()
        optimizer = torch.optim.SGD([{"params": [layer.weight], "weight_decay": weight_decay},
                                     {"params": [layer.bias], "weight_decay": 0.0}], lr=lr, momentum=momentum)
        optimizers.append((optimizer, torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))))
    order = torch.Generator().manual_seed(3)
    for step in range(steps):
        batch = torch.randperm(len(x), generator=order)[:32]
        with torch.no_grad():
            heads.step(task, x[batch], y[batch], 0.5 * (1 + np.cos(np.pi * step / steps)))
        for layer, (optimizer, schedule) in zip(reference, optimizers):
            loss = head_loss(task, layer(x[batch])[None, None], y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    for index, layer in enumerate(reference):
        torch.testing.assert_close(heads.head_weight(0, index), layer.weight.detach().T, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(heads.head_bias(0, index), layer.bias.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_logit_gradient_is_the_gradient_of_the_loss(task):
    inputs = make_inputs(task, missing=0.3)
    targets = torch.from_numpy(inputs.targets["train"][:40])
    logits = torch.randn(2, 3, 40, 3, dtype=torch.float64, requires_grad=True)
    head_loss(task, logits, targets.double()).backward()
    torch.testing.assert_close(logit_gradient(task, logits.detach(), targets.double()), logits.grad)


def test_linear_grid_picks_the_best_val_lr():
    inputs = make_inputs(Task.MULTICLASS)
    cfg = LinearConfig(epochs=5, lr=[1e-5, 1e-3, 0.1, 1.0], batch_size=32)
    result = PROTOCOLS.get("linear").run(cfg, inputs)
    assert len(result.candidates) == 8  # 4 lrs x 2 feature types, one pass
    values = [c["val"] for c in result.candidates]
    best = result.candidates[int(np.argmax(values))]
    assert result.selected == best["params"]
    assert result.val_metrics["auroc"] == pytest.approx(best["val"])
    assert result.selected["lr"] != 1e-5  # a vanishing lr cannot learn this signal in 5 epochs
    assert result.test_metrics["auroc"] > 0.7


def test_missing_multilabel_targets_are_masked_not_negative():
    logits = torch.randn(1, 1, 6, 3)
    targets = torch.tensor([[1, 0, float("nan")], [0, float("nan"), 1], [1, 1, 0],
                            [float("nan")] * 3, [0, 0, 0], [1, float("nan"), float("nan")]])
    known = ~targets.isnan()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0][known], targets[known])
    assert head_loss(Task.MULTILABEL, logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    as_negative = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0], targets.nan_to_num(0.0))
    assert head_loss(Task.MULTILABEL, logits, targets).item() != pytest.approx(as_negative.item(), rel=1e-3)


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTILABEL])
def test_logreg_chooses_C_on_val_only(task):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from radbench.protocols.logreg import LogregConfig

    inputs = make_inputs(task, num_classes=2 if task is Task.BINARY else 3, missing=0.1)
    result = PROTOCOLS.get("logreg").run(LogregConfig(C=[1e-4, 0.01, 1.0]), inputs)
    values = [c["val"] for c in result.candidates]
    assert result.selected == result.candidates[int(np.argmax(values))]["params"]
    if task is Task.BINARY:  # refit on train+val equals sklearn directly
        feature, C = result.selected["feature"], result.selected["C"]
        x = np.concatenate([inputs.features.get(feature, "train"), inputs.features.get(feature, "val")])
        y = np.concatenate([inputs.targets["train"], inputs.targets["val"]]).argmax(1)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=C, max_iter=1000, random_state=0).fit(scaler.transform(x), y)
        expected = model.predict_proba(scaler.transform(inputs.features.get(feature, "test")))
        np.testing.assert_allclose(result.test_scores, expected, rtol=1e-6)


def test_linear_multilabel_with_missing_labels_learns():
    inputs = make_inputs(Task.MULTILABEL, missing=0.3)
    result = PROTOCOLS.get("linear").run(LinearConfig(epochs=10, lr=[0.01, 0.1], batch_size=32), inputs)
    assert result.test_metrics["auroc"] > 0.75
    assert result.test_scores.shape == (50, 3)


def test_linear_warns_on_nearly_constant_features_and_standardising_rescues_them():
    """Random-init ViTs give features like 0.8 + 1e-5 * signal: unscaled SGD cannot use them; say so."""
    from dataclasses import replace

    from rich.console import Console

    base = make_inputs(Task.MULTICLASS, seed=3)
    console = Console(record=True, width=200)
    squashed = FeatureSource(lambda s: 0.8 + 1e-5 * base.features.bundle(s), base.features.columns)
    inputs = replace(base, features=squashed, reporter=Reporter(console=console, quiet=True))
    spec = PROTOCOLS.get("linear")
    spec.run(LinearConfig(epochs=10, lr=[1e-2, 1e-1]), inputs)
    assert "features barely vary between images" in console.export_text()

    standardised = spec.run(LinearConfig(epochs=10, lr=[1e-2, 1e-1], normalize="standard"), inputs)
    assert standardised.test_metrics["auroc"] > 0.75

    console = Console(record=True, width=200)
    spec.run(LinearConfig(epochs=10, lr=[1e-2]), replace(base, reporter=Reporter(console=console, quiet=True)))
    assert "barely vary" not in console.export_text()

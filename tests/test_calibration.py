"""`calibrate: temperature | platt`: fitted on val only, equal to independent fits, stored beside the raw numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from radbench.data.base import Task, labels_to_targets
from radbench.metrics.calibration import apply_calibration, fit_calibration
from radbench.metrics.clinical import calibrated_metrics


def _overconfident(rng, n, scale=3.0):
    """Binary labels and scores whose logits are `scale` times the true ones (temperature `scale` undoes it)."""
    true_logit = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    p = 1 / (1 + np.exp(-scale * true_logit))
    return labels_to_targets(Task.BINARY, y, 2), np.stack([1 - p, p], 1)


def test_temperature_equals_a_logistic_fit_without_intercept_and_improves_test_calibration():
    rng = np.random.default_rng(0)
    val_t, val_s = _overconfident(rng, 3000)
    test_t, test_s = _overconfident(rng, 3000)
    params = fit_calibration("temperature", Task.BINARY, val_t, val_s)
    logit = np.log(val_s[:, 1]) - np.log(val_s[:, 0])
    reference = LogisticRegression(fit_intercept=False, C=np.inf).fit(logit[:, None], val_t[:, 1].astype(int))
    assert params["temperature"] == pytest.approx(1 / reference.coef_[0, 0], rel=1e-3)
    assert params["temperature"] == pytest.approx(3.0, rel=0.1)
    calibrated, details = calibrated_metrics("temperature", Task.BINARY, val_t, val_s, test_t, test_s, ("n", "p"))
    y, raw, after = test_t[:, 1], test_s[:, 1], apply_calibration(details, Task.BINARY, test_s)[:, 1]
    assert calibrated["brier@calibrated"] == pytest.approx(np.mean((after - y) ** 2), abs=1e-12)
    assert calibrated["brier@calibrated"] < np.mean((raw - y) ** 2)
    assert calibrated["ece@calibrated"] < 0.03


def test_platt_equals_an_independent_minimisation_of_the_logistic_loss_per_finding():
    rng = np.random.default_rng(1)
    n = 2000
    targets = (rng.random((n, 2)) < [0.2, 0.5]).astype(np.float64)
    targets[rng.random((n, 2)) < 0.1] = np.nan  # unknown findings are left out of the fit
    logits = np.where(targets == 1, 1.0, -1.0) * 2 + rng.normal(size=(n, 2)) + 1.5
    scores = 1 / (1 + np.exp(-logits))
    params = fit_calibration("platt", Task.MULTILABEL, targets, scores)
    for c in range(2):
        known = ~np.isnan(targets[:, c])
        x, y = logits[known, c], targets[known, c]

        def loss(ab, x=x, y=y):
            z = ab[0] * x + ab[1]
            return np.mean(np.logaddexp(0, z) - y * z)

        expected = minimize(loss, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).x
        assert params["platt"][c] == pytest.approx(expected, rel=1e-3)


def test_the_map_is_fitted_on_val_only():
    rng = np.random.default_rng(2)
    val_t, val_s = _overconfident(rng, 500)
    test_t, test_s = _overconfident(rng, 500)
    for method in ("temperature", "platt"):
        _, fitted = calibrated_metrics(method, Task.BINARY, val_t, val_s, test_t, test_s, ("n", "p"))
        shuffled = test_t[rng.permutation(len(test_t))]
        _, refitted = calibrated_metrics(method, Task.BINARY, val_t, val_s, shuffled, test_s, ("n", "p"))
        assert fitted == refitted  # test labels never reach the map
        _, other = calibrated_metrics(method, Task.BINARY, val_t[::-1], val_s, test_t, test_s, ("n", "p"))
        assert other != fitted


def test_temperature_keeps_multiclass_scores_a_distribution_and_each_prediction():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(400, 4)) * 4
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = labels_to_targets(Task.MULTICLASS, rng.integers(0, 4, 400), 4)
    after = apply_calibration(fit_calibration("temperature", Task.MULTICLASS, targets, scores), Task.MULTICLASS,
                              scores)
    assert np.allclose(after.sum(1), 1) and (after.argmax(1) == scores.argmax(1)).all()


def test_without_val_scores_the_numbers_are_undefined_with_a_reason():
    targets, scores = _overconfident(np.random.default_rng(4), 50)
    metrics, details = calibrated_metrics("platt", Task.BINARY, None, None, targets, scores, ("n", "p"))
    assert np.isnan(metrics["brier@calibrated"]) and "no val scores" in details["undefined"]


def _three_class_npz(path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (30, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (30, 1))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("protocol, dataset, message", [
    ({"logreg": {"C": [1.0], "calibrate": "platt"}}, "multiclass", "use calibrate: temperature"),
    ({"logreg": {"C": [1.0], "calibrate": "sigmoid"}}, "binary", "calibrate"),
])
def test_a_calibration_that_cannot_apply_is_a_one_line_error_at_plan(tmp_path, cli, pneumonia_npz, protocol,
                                                                     dataset, message):
    from tests.conftest import tiny_study, write_study

    path = pneumonia_npz if dataset == "binary" else _three_class_npz(tmp_path / "three.npz")
    datasets = [{"name": "d", "adapter": "medmnist", "path": str(path), "limit": 30}]
    result = cli("plan", write_study(tmp_path, tiny_study(tmp_path, datasets, [protocol])))
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_a_run_stores_calibrated_numbers_that_equal_the_exported_predictions_through_the_stored_map(
        tmp_path, pneumonia_npz, cli):
    import radbench
    from tests.conftest import tiny_study, write_study

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    protocols = [{"logreg": {"C": [1.0], "calibrate": "temperature"}}]
    assert cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, protocols))).exit_code == 0
    results = radbench.load(tmp_path / "out")
    stored = results.results.set_index("metric").value
    params = results.jobs.details.iloc[0]["calibration"]
    predictions = results.predictions
    y = predictions["target_pneumonia"].to_numpy()
    p = predictions["score_pneumonia"].to_numpy()
    z = np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(p, 1e-6, 1 - 1e-6))
    calibrated = 1 / (1 + np.exp(-z / params["temperature"]))
    assert stored["brier@calibrated"] == pytest.approx(np.mean((calibrated - y) ** 2), abs=1e-9)
    assert stored["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-9)
    on_test = fit_calibration("temperature", Task.BINARY, np.stack([1 - y, y], 1), np.stack([1 - p, p], 1))
    assert abs(on_test["temperature"] - params["temperature"]) > 1e-4  # the map never saw test labels

"""Operating points and calibration against independent loops over the predictions (and scikit-learn's Brier)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from radbench.data.base import Task, labels_to_targets
from radbench.metrics.clinical import clinical_metrics


def _loop_operating(y, s):
    thresholds = np.r_[np.unique(s), np.inf]
    sens = np.array([(s[y == 1] >= t).mean() for t in thresholds])
    spec = np.array([(s[y == 0] < t).mean() for t in thresholds])
    out = {}
    for target, percent in ((0.90, 90), (0.95, 95)):
        out[f"sens@spec{percent}"] = sens[spec >= target].max()
        out[f"spec@sens{percent}"] = spec[sens >= target].max()
    return out


def _loop_youden(y, s):
    thresholds = np.unique(s)
    j = [(s[y == 1] >= t).mean() + (s[y == 0] < t).mean() - 1 for t in thresholds]
    return thresholds[int(np.argmax(j))]


def _loop_ece(y, s, bins=10):
    order = np.argsort(s, kind="mergesort")
    size = len(s) // bins
    return sum(abs(y[order[k * size:(k + 1) * size]].mean() - s[order[k * size:(k + 1) * size]].mean()) * size
               for k in range(bins)) / len(s)


def _scores(rng, y, strength):
    return 1 / (1 + np.exp(-(strength * (y - 0.5) * 4 + rng.normal(size=len(y)))))


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTILABEL])
def test_operating_points_youden_and_calibration_equal_independent_loops(task):
    rng = np.random.default_rng(3)
    n, classes = 200, (2 if task is Task.BINARY else 3)
    if task is Task.BINARY:
        val_y, test_y = rng.integers(0, 2, n), rng.integers(0, 2, n)
        val_t, test_t = labels_to_targets(task, val_y, 2), labels_to_targets(task, test_y, 2)
        p_val, p_test = _scores(rng, val_y, 0.8), _scores(rng, test_y, 0.8)
        val_s, test_s = np.stack([1 - p_val, p_val], 1), np.stack([1 - p_test, p_test], 1)
        columns = [(1, "b")]
    else:
        val_t = (rng.random((n, classes)) < 0.3).astype(np.float32)
        test_t = (rng.random((n, classes)) < 0.3).astype(np.float32)
        val_s = np.stack([_scores(rng, val_t[:, c], 0.5 + 0.3 * c) for c in range(classes)], 1)
        test_s = np.stack([_scores(rng, test_t[:, c], 0.5 + 0.3 * c) for c in range(classes)], 1)
        columns = [(c, "abc"[c]) for c in range(classes)]
    names = ("a", "b") if task is Task.BINARY else ("a", "b", "c")
    metrics, notes = clinical_metrics(task, val_t, val_s, test_t, test_s, names)
    per_class = {}
    for c, name in columns:
        y, s = test_t[:, c].astype(int), test_s[:, c]
        threshold = _loop_youden(val_t[:, c].astype(int), val_s[:, c])
        assert notes["youden_threshold"][name] == pytest.approx(threshold)
        predicted = s >= threshold
        tp, fp = (predicted & (y == 1)).sum(), (predicted & (y == 0)).sum()
        fn, tn = (~predicted & (y == 1)).sum(), (~predicted & (y == 0)).sum()
        expected = {**_loop_operating(y, s), "brier": brier_score_loss(y, s), "ece": _loop_ece(y, s),
                    "sensitivity@youden": tp / (tp + fn), "specificity@youden": tn / (tn + fp),
                    "ppv@youden": tp / (tp + fp), "npv@youden": tn / (tn + fn), "f1@youden": 2 * tp / (2 * tp + fp + fn)}
        for key, value in expected.items():
            assert metrics[f"{key}/{name}"] == pytest.approx(value, abs=1e-12), (key, name)
            per_class.setdefault(key, []).append(value)
    for key, values in per_class.items():
        assert metrics[key] == pytest.approx(np.mean(values), abs=1e-12)


def test_a_split_with_one_class_leaves_the_numbers_undefined_with_a_reason():
    y = np.zeros(20, int)
    targets = labels_to_targets(Task.BINARY, y, 2)
    scores = np.full((20, 2), 0.5)
    metrics, notes = clinical_metrics(Task.BINARY, targets, scores, targets, scores, ("normal", "finding"))
    assert metrics == {} and notes["clinical_undefined"] == ["finding: the test split has one label value"]
    mixed = labels_to_targets(Task.BINARY, np.r_[np.zeros(10, int), np.ones(10, int)], 2)
    metrics, notes = clinical_metrics(Task.BINARY, targets, scores, mixed, scores, ("normal", "finding"))
    assert "sens@spec90" in metrics and "sensitivity@youden" not in metrics
    assert notes["youden_undefined"] == ["finding: the val split has one label value"]


def test_a_run_stores_them_with_the_threshold_chosen_on_val(tmp_path, pneumonia_npz, cli):

    import radbench
    from tests.conftest import tiny_study, write_study

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    assert cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, [{"logreg": {"C": [1.0]}}]))).exit_code == 0
    results = radbench.load(tmp_path / "out")
    stored = results.results.set_index("metric").value
    for key in ("sens@spec90", "spec@sens95", "sensitivity@youden", "ppv@youden", "brier", "ece",
                "sens@spec90/pneumonia"):
        assert 0.0 <= stored[key] <= 1.0, key
    details = results.jobs.details.iloc[0]
    assert 0.0 < details["clinical"]["youden_threshold"]["pneumonia"] <= 1.0


def test_the_report_shows_them_with_intervals_and_reliability_diagrams(tmp_path, pneumonia_npz, cli):
    import pandas as pd

    import radbench
    from tests.conftest import tiny_study, write_study

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}]
    protocols = [{"logreg": {"C": [1.0]}},
                 {"linear": {"epochs": 3, "lr": [0.1], "normalize": "standard", "calibrate": "temperature"}}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, protocols, seeds=[0, 1, 2]))
    assert cli("run", study).exit_code == 0
    assert cli("report", tmp_path / "out", "--resamples", "100", "--patch-images", "0").exit_code == 0
    table = pd.read_csv(tmp_path / "out" / "report" / "tables" / "clinical-p.csv")
    same = radbench.load(tmp_path / "out").clinical("p")  # the notebook's view of the same table
    assert same[["protocol", "metric", "mean"]].reset_index(drop=True).equals(
        table[["protocol", "metric", "mean"]].reset_index(drop=True))
    stored = radbench.load(tmp_path / "out").results
    for row in table.itertuples():
        values = stored[(stored.protocol == row.protocol) & (stored.metric == row.metric)].value
        assert row.mean == pytest.approx(values.mean(), abs=1e-9) and row.runs == 3
        assert row.ci_low <= row.mean <= row.ci_high
    calibrated = table[table.metric.str.endswith("@calibrated")]
    assert set(calibrated.protocol) == {"linear"} and set(calibrated.metric) == {"brier@calibrated", "ece@calibrated"}
    kinds = dict(zip(table.protocol, table.interval))
    assert kinds["logreg"] == "test patients (runs identical)" and kinds["linear"] == "runs × test patients"
    figures = {p.name for p in (tmp_path / "out" / "report" / "figures").glob("reliability-*.png")}
    assert figures == {"reliability-p-logreg.png", "reliability-p-linear.png"}
    assert "Youden" in (tmp_path / "out" / "report" / "index.html").read_text()


@pytest.mark.parametrize("per_patient", [False, True])
@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTILABEL])
def test_the_reports_resampled_numbers_equal_clinical_metrics_on_each_written_out_resample(task, per_patient):
    """The report computes every resample at once (from patient multiplicities, or from sample weights); written
    out (each patient's images repeated by its multiplicity) and passed to clinical_metrics one by one, each
    resample gives the same. Sizes that reach the compiled walks' corners: two blocks of resamples (the second part
    full), more tie groups than a block walks before it checks whether it may stop."""
    from radbench.metrics.calibration import apply_calibration
    from radbench.report.clinical_weights import clinical_under_weights
    from radbench.report.resamples import patient_resamples
    from radbench.report.stats import patient_weights

    rng = np.random.default_rng(7)
    n = 600
    if task is Task.BINARY:
        y = rng.integers(0, 2, n)
        targets = labels_to_targets(task, y, 2)
        p = np.round(_scores(rng, y, 0.7), 3)  # rounded: ties, as small heads and kNN give
        scores, names = np.stack([1 - p, p], 1), ("a", "b")
        thresholds = {"b": 0.5}
    else:
        targets = (rng.random((n, 3)) < 0.25).astype(np.float64)
        targets[rng.random((n, 3)) < 0.1] = np.nan
        scores = np.round(np.stack([_scores(rng, np.nan_to_num(targets[:, c]), 0.6) for c in range(3)], 1), 3)
        names, thresholds = ("a", "b", "c"), {"a": 0.4, "c": 0.6}
    patients = np.repeat(np.arange(400), [2] * 200 + [1] * 200)  # some patients with two images
    weights = patient_weights(patients, 70, seed=3)
    calibrated = apply_calibration({"method": "temperature", "temperature": 2.0}, task, scores)
    given = patient_resamples(patients, 70, seed=3) if per_patient else weights
    vectorised = clinical_under_weights(task, targets, scores, names, thresholds, given, calibrated)
    for r, row in enumerate(weights):
        idx = np.repeat(np.arange(n), row.astype(int))
        expected = clinical_metrics(task, None, None, targets[idx], scores[idx], names, thresholds)[0]
        after = clinical_metrics(task, None, None, targets[idx], calibrated[idx], names)[0]
        expected.update({key.replace(k, f"{k}@calibrated", 1): value for key, value in after.items()
                         for k in ("brier", "ece") if key.split("/")[0] == k})
        for key, values in vectorised.items():
            reference = expected.get(key, np.nan)
            assert values[r] == pytest.approx(reference, abs=1e-12, nan_ok=True), (key, r)

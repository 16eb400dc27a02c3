"""Deterministic work once (issue 40): a protocol whose result cannot depend on the seed (kNN, L-BFGS logistic
regression) is computed once per backbone x dataset and stored under every seed, with the same numbers as
computing each seed on its own; seeded protocols still run per seed; `plan` says which jobs are shared."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from radbench.protocols import PROTOCOLS
from tests.conftest import tiny_study, write_study

PROTOCOL_LIST = [{"knn": {"k": [3, 10]}}, {"knn": {"name": "knn_wide", "k": [25]}},
                 {"logreg": {"C": [0.01, 1.0]}}, {"linear": {"epochs": 2, "lr": [0.01]}}]


def _counted(monkeypatch, calls: Counter, shared: bool = True):
    """Count every protocol computation; `shared=False`: every protocol treated as seed-dependent (today's way)."""
    for name in ("knn", "logreg", "linear"):
        spec = PROTOCOLS.get(name)

        def run(cfg, inputs, _run=spec.run, _name=name):
            calls[(_name, getattr(cfg, "name", None))] += 1
            return _run(cfg, inputs)

        changed = dataclasses.replace(spec, run=run, **({} if shared else {"seed_free": lambda cfg: False}))
        monkeypatch.setitem(PROTOCOLS._items, name, changed)


def _run(tmp_path, pneumonia_npz, folder: str):
    import radbench

    study = tiny_study(tmp_path / folder, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz),
                                            "limit": 60}], PROTOCOL_LIST, seeds=[0, 1, 2])
    return radbench.run(study)


@pytest.fixture(scope="module")
def both(tmp_path_factory, pneumonia_npz):
    monkeypatch = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("seed_free")
    shared_calls, every_calls = Counter(), Counter()
    try:
        _counted(monkeypatch, shared_calls)
        shared = _run(tmp, pneumonia_npz, "shared")
        monkeypatch.undo()
        _counted(monkeypatch, every_calls, shared=False)
        every = _run(tmp, pneumonia_npz, "every")
    finally:
        monkeypatch.undo()
    return shared, shared_calls, every, every_calls


def test_seed_free_protocols_are_computed_once_and_stored_under_every_seed(both):
    shared, calls, _, every_calls = both
    assert calls == {("knn", None): 1, ("knn", "knn_wide"): 1, ("logreg", None): 1, ("linear", None): 3}
    assert set(every_calls.values()) == {3}
    jobs = shared.jobs
    for protocol in ("knn", "knn_wide", "logreg", "linear"):
        assert sorted(jobs[jobs.protocol == protocol].seed) == [0, 1, 2], protocol
    notes = {(row.protocol, row.seed): "computed_once" in row.details for row in shared.store.jobs().itertuples()}
    assert notes[("knn", 1)] and notes[("logreg", 2)] and not notes[("knn", 0)] and not notes[("linear", 1)]


def test_shared_results_equal_each_seed_computed_on_its_own(both):
    """What a seed-free protocol stores for seeds 1 and 2 is what computing those seeds would give: the claim that
    its result cannot depend on the seed, checked against running it per seed. Two kNN entries keep their own."""
    shared, _, every, _ = both
    a, b = shared.predictions, every.predictions
    columns = [c for c in a.columns if c.startswith("score_")]
    for protocol in ("knn", "knn_wide", "logreg"):
        for seed in (0, 1, 2):
            mine = a[(a.protocol == protocol) & (a.seed == seed)].sort_values("sample_id")[columns].to_numpy()
            own = b[(b.protocol == protocol) & (b.seed == seed)].sort_values("sample_id")[columns].to_numpy()
            np.testing.assert_array_equal(mine, own)
    knn = a[a.protocol == "knn"][columns].to_numpy()
    wide = a[a.protocol == "knn_wide"][columns].to_numpy()
    assert not np.array_equal(knn, wide)  # another config: another result, never the shared one
    linear = [a[(a.protocol == "linear") & (a.seed == s)].sort_values("sample_id")[columns].to_numpy() for s in (0, 1)]
    assert not np.array_equal(*linear)  # a seeded protocol still differs by seed


def test_plan_counts_the_shared_jobs(tmp_path, pneumonia_npz, cli):
    study = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 60}],
                       PROTOCOL_LIST, seeds=[0, 1, 2])
    result = cli("plan", write_study(tmp_path, study))
    assert result.exit_code == 0, result.stderr
    assert "6 of these jobs are seed-free protocols" in " ".join(result.stdout.split())


def test_small_probes_run_on_one_maths_thread_and_give_the_threads_back(monkeypatch):
    """Logistic regression always, a linear grid when its steps are small: one BLAS / OpenMP / torch thread inside
    the fit (threads fight for busy cores), the process's own setting again after it."""
    import torch
    from threadpoolctl import threadpool_info

    from radbench.data.base import Task
    from radbench.protocols import linear, logreg

    seen = {}

    def spy(name, original):
        def wrapped(*args, **kwargs):
            seen[name] = (torch.get_num_threads(), {i["num_threads"] for i in threadpool_info()})
            return original(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(logreg._Fit, "_fit", staticmethod(spy("logreg", logreg._Fit._fit)))
    monkeypatch.setattr(linear.LinearHeads, "step", spy("linear", linear.LinearHeads.step))
    torch.set_num_threads(2)
    inputs = _tiny_inputs(Task.BINARY)
    logreg.run_logreg(logreg.LogregConfig(C=[1.0]), inputs)
    linear.run_linear(linear.LinearConfig(epochs=1, lr=[0.01]), inputs)
    assert seen["logreg"] == (1, {1}) and seen["linear"] == (1, {1})
    assert torch.get_num_threads() == 2


def _tiny_inputs(task):
    import torch

    from radbench.progress import Reporter
    from radbench.protocols.base import ProtocolInput

    rng = np.random.default_rng(0)
    features = {split: rng.standard_normal((n, 8)).astype(np.float32) for split, n in
                (("train", 40), ("val", 20), ("test", 20))}
    targets = {split: np.eye(2, dtype=np.float32)[rng.integers(0, 2, len(x))] for split, x in features.items()}

    class Source:
        def get(self, feature_type, split):
            return features[split]

        def bundle(self, split):
            return features[split]

        def columns(self, feature_type):
            return np.arange(8)

    return ProtocolInput(task=task, class_names=("a", "b"), features=Source(), targets=targets, feature_types=["cls"],
                         selection_metric="auroc", seed=0, device=torch.device("cpu"), reporter=Reporter(quiet=True))


def test_a_tie_on_val_is_recorded_and_can_go_to_the_head_that_trained():
    """C values too small to change any ranking tie on val: the job says the choice was a tie. Where a protocol
    names a preference (linear: the larger lr, a head that trained rather than its initialisation), ties go there."""
    from radbench.data.base import Task
    from radbench.protocols import logreg
    from radbench.protocols.base import pick_best

    result = logreg.run_logreg(logreg.LogregConfig(C=[1e-4, 1e-3, 1e-2]), _tiny_inputs(Task.BINARY))
    assert result.details["selection_tie"].startswith("3 candidates tied on val")
    assert pick_best([0.7, 0.8, 0.8, 0.6], prefer=[1e-5, 1e-4, 1e-2, 1.0]) == 2
    assert pick_best([0.7, 0.8, 0.8, 0.6]) == 1 and pick_best([float("nan"), 0.5], prefer=[2.0, 1.0]) == 1


def test_few_shot_repeats_with_disjoint_patients_give_different_results():
    """Two repeats of a seed draw disjoint patients: their heads see different data, so their test scores differ
    (a head that never left its seeded initialisation would give the same scores whatever it was shown). The
    default lr grid, whose smallest lr barely moves a head, on a small multi-label set as in issue 37."""
    from dataclasses import replace
    from types import SimpleNamespace

    from radbench.data.base import Task
    from radbench.protocols.few_shot import FewShotConfig, run_few_shot
    from tests.test_protocols import make_inputs

    inputs = make_inputs(Task.MULTILABEL, n=(60, 30, 40), num_classes=3)
    train = inputs.targets["train"]
    split = SimpleNamespace(patient_ids=np.array([f"p{i}" for i in range(len(train))]), labels=train)
    inputs = replace(inputs, dataset=SimpleNamespace(splits={"train": split}, task=Task.MULTILABEL, num_classes=3,
                                                     class_names=inputs.class_names))
    config = FewShotConfig(shots=[2], repeats=10, head="linear", head_config={"epochs": 5})
    drawn = {}
    for repeat in range(10):
        result = run_few_shot(config, replace(inputs, repeat=repeat))
        drawn[repeat] = ({p for patients in result.details["patients_per_class"].values() for p in patients}, result)
    other = next(r for r in range(1, 10) if drawn[0][0].isdisjoint(drawn[r][0]))  # a draw sharing no patient
    results = [drawn[0][1], drawn[other][1]]
    assert not np.allclose(results[0].test_scores, results[1].test_scores, atol=1e-4)
    assert results[0].test_metrics["auroc"] != results[1].test_metrics["auroc"]



def test_logreg_grid_side_by_side_equals_one_fit_at_a_time(monkeypatch):
    """Large features: the C grid fitted on two threads chooses, scores and counts non-converged fits exactly as
    one fit at a time (multi-label: one model per class, some stopped at max_iter); small features stay on one."""
    from dataclasses import replace

    from radbench.data.base import Task
    from radbench.protocols import logreg
    from tests.test_protocols import make_inputs

    inputs = make_inputs(Task.MULTILABEL, n=(120, 40, 50), num_classes=3, missing=0.1)
    assert logreg.grid_workers(replace(inputs, fit_workers=2), inputs.feature_types[0]) == 1
    monkeypatch.setattr(logreg, "SIDE_BY_SIDE_MIN_VALUES", 0)
    assert logreg.grid_workers(replace(inputs, fit_workers=2), inputs.feature_types[0]) == 2
    config = logreg.LogregConfig(C=[float(c) for c in np.logspace(-3, 4, 12)], max_iter=5)
    one, two = (logreg.run_logreg(config, replace(inputs, fit_workers=w)) for w in (1, 2))
    assert one.selected == two.selected and one.candidates == two.candidates
    np.testing.assert_array_equal(one.test_scores, two.test_scores)
    assert one.details["not_converged_fits"] == two.details["not_converged_fits"] > 12

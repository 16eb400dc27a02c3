"""Linear CKA: the defining properties, and the streamed feature-space computation against the n x n Gram-matrix
definition on real cached features (two backbones x PneumoniaMNIST, every block cached)."""

from __future__ import annotations

import numpy as np
import pytest

import radbench
from radbench.report.cka import backbone_cka, linear_cka
from tests.conftest import run_cli, tiny_study, write_study


def gram_cka(x, y, unbiased=False):
    """Kornblith et al. (2019) with n x n Gram matrices: HSIC(K, L) = tr(K H L H) / (n-1)^2, or Song et al.'s
    unbiased estimator on centred features."""
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x)

    def hsic(k, l):
        if not unbiased:
            h = np.eye(n) - 1.0 / n
            return np.trace(k @ h @ l @ h) / (n - 1) ** 2
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        ones = np.ones(n)
        return (np.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * ones @ k @ l @ ones) / (n * (n - 3))

    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_properties(unbiased):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20))
    y = x @ rng.normal(size=(20, 30)) + 0.5 * rng.normal(size=(300, 30))
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    value = linear_cka(x, y, unbiased)
    assert linear_cka(x, x, unbiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, y @ q, unbiased) == pytest.approx(value, abs=1e-10)  # orthogonal transform
    assert linear_cka(7.5 * x, y, unbiased) == pytest.approx(value, abs=1e-10)  # isotropic scaling
    assert linear_cka(x + 3.0, y, unbiased) == pytest.approx(value, abs=1e-10)  # a shift: features are centred
    assert linear_cka(x, y, unbiased) == pytest.approx(gram_cka(x, y, unbiased), rel=1e-9)
    assert 0.2 < value < 1.0
    noise = rng.normal(size=(300, 30))
    assert abs(linear_cka(x, noise, unbiased=True)) < 0.05  # independent: unbiased CKA near 0
    # not invariant to a general (non-orthogonal) linear map: it would not be linear CKA
    assert linear_cka(x, y @ np.diag(rng.uniform(0.1, 10, 30)), unbiased) != pytest.approx(value, abs=1e-3)


def test_streamed_chunks_equal_one_pass(monkeypatch):
    import radbench.report.cka as cka

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 8)).astype(np.float32), rng.normal(size=(1000, 5)).astype(np.float32)
    whole = [linear_cka(x, y), linear_cka(x, y, unbiased=True)]
    monkeypatch.setattr(cka, "CHUNK_ROWS", 37)
    assert [linear_cka(x, y), linear_cka(x, y, unbiased=True)] == pytest.approx(whole, rel=1e-10)


@pytest.fixture(scope="module")
def cached_study(tmp_path_factory, pneumonia_npz):
    folder = tmp_path_factory.mktemp("cka")
    raw = tiny_study(folder, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 150}],
                     [{"knn": {"k": [5]}}], features=["cls", "last3"])
    raw["backbones"] = [{"name": "timm:test_vit", "weights": "none", "label": "vit_a"},
                        {"name": "timm:test_vit", "weights": "none", "label": "vit_b", "model_kwargs": {"depth": 3}}]
    run_cli("run", write_study(folder, raw), "--quiet")
    return folder / "out"


def test_cka_on_cached_features_matches_the_gram_definition(cached_study):
    from radbench.report.cka import _test_features, cached_entries

    entries = cached_entries(cached_study).set_index("backbone")
    features = {name: _test_features(row.folder, row.layout, "cls", row.n) for name, row in entries.iterrows()}
    assert len(features["vit_a"]) == len(features["vit_b"]) > 20
    for unbiased in (False, True):
        matrix = backbone_cka(cached_study, "p", unbiased=unbiased)
        assert list(matrix.index) == ["vit_a", "vit_b"] and np.allclose(np.diag(matrix), 1.0)
        assert matrix.loc["vit_a", "vit_b"] == pytest.approx(gram_cka(features["vit_a"], features["vit_b"], unbiased),
                                                               rel=1e-6)
    layers = radbench.load(cached_study).cka("p", backbone="vit_a")
    assert list(layers.index) == ["block4", "block5", "block6"]  # test_vit has 6 blocks; the last 3 are cached
    assert np.allclose(layers.values, layers.values.T) and np.allclose(np.diag(layers), 1.0)
    bundle = _test_features(entries.loc["vit_a"].folder, entries.loc["vit_a"].layout, "last3", entries.loc["vit_a"].n)
    assert layers.loc["block4", "block6"] == pytest.approx(gram_cka(bundle[:, :64], bundle[:, 128:]), rel=1e-6)

"""Linear CKA (Kornblith et al. 2019) between cached features: backbone against backbone on one dataset's test
images, and block against block of one backbone.

Computed in feature space, streaming over rows: only d x d cross-products are held, never the n x n Gram
matrices, so tens of thousands of images fit in memory. `unbiased=True` uses the unbiased HSIC estimator
(Song et al. 2012, as in Nguyen et al. 2021's minibatch CKA) on centred features, whose terms also reduce to
feature-space sums: for centred X, K1 = 0, so tr(K~L~) = ||X'Y||^2 - sum k_ii l_ii, 1'K~1 = -sum k_ii and
1'K~L~1 = sum k_ii l_ii (K~ = K with its diagonal zeroed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.backbones.layout import BundleLayout

CHUNK_ROWS = 4096


def _moments(x: np.ndarray, y: np.ndarray) -> dict:
    """Centred cross-products and per-row squared norms, accumulated over row chunks in float64."""
    n = len(x)
    mean_x = np.zeros(x.shape[1])
    mean_y = np.zeros(y.shape[1])
    for start in range(0, n, CHUNK_ROWS):
        mean_x += np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64).sum(0)
        mean_y += np.asarray(y[start:start + CHUNK_ROWS], dtype=np.float64).sum(0)
    mean_x /= n
    mean_y /= n
    out = {"n": n, "xy": 0.0, "xx": 0.0, "yy": 0.0, "kk": 0.0, "ll": 0.0, "kl": 0.0, "k": 0.0, "l": 0.0}
    for start in range(0, n, CHUNK_ROWS):
        a = np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64) - mean_x
        b = np.asarray(y[start:start + CHUNK_ROWS], dtype=np.float64) - mean_y
        out["xy"] = out["xy"] + a.T @ b
        out["xx"] = out["xx"] + a.T @ a
        out["yy"] = out["yy"] + b.T @ b
        k, l = (a * a).sum(1), (b * b).sum(1)  # diagonals of the centred Gram matrices
        out["kk"] += float(k @ k)
        out["ll"] += float(l @ l)
        out["kl"] += float(k @ l)
        out["k"] += float(k.sum())
        out["l"] += float(l.sum())
    return out


def _unbiased_hsic(cross: float, diagonal_product: float, diagonal_x: float, diagonal_y: float, n: int) -> float:
    trace = cross - diagonal_product  # tr(K~ L~)
    return (trace + diagonal_x * diagonal_y / ((n - 1) * (n - 2)) - 2 * diagonal_product / (n - 2)) / (n * (n - 3))


def linear_cka(x: np.ndarray, y: np.ndarray, unbiased: bool = False) -> float:
    """CKA of two representations of the same n samples (rows), any widths."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same samples in both: {len(x)} and {len(y)} rows")
    if unbiased and len(x) < 4:
        raise ValueError("unbiased CKA needs at least 4 samples")
    m = _moments(x, y)
    cross, self_x, self_y = (float(np.sum(m[key] ** 2)) for key in ("xy", "xx", "yy"))
    if not unbiased:
        denominator = np.sqrt(self_x * self_y)
        return float(cross / denominator) if denominator > 0 else float("nan")
    n = m["n"]
    hsic_xy = _unbiased_hsic(cross, m["kl"], m["k"], m["l"], n)
    hsic_xx = _unbiased_hsic(self_x, m["kk"], m["k"], m["k"], n)
    hsic_yy = _unbiased_hsic(self_y, m["ll"], m["l"], m["l"], n)
    denominator = np.sqrt(hsic_xx * hsic_yy) if hsic_xx > 0 and hsic_yy > 0 else 0.0
    return float(hsic_xy / denominator) if denominator > 0 else float("nan")


# -- on a study's feature cache ---------------------------------------------------------------------------------


def cached_entries(output_dir: Path) -> pd.DataFrame:
    """The classification feature-cache entries of a results folder: backbone, dataset, folder, layout and the
    digest of the test split's sample ids (entries with equal digests hold the same images in the same order)."""
    rows = []
    for manifest_path in sorted((Path(output_dir) / "features").glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
            layout = BundleLayout(**manifest["layout"])
            test = manifest["splits"]["test"]
        except (ValueError, KeyError, TypeError):
            continue  # unreadable: the next run rewrites it; the report just leaves it out
        rows.append({"backbone": manifest["backbone"].get("label"), "dataset": manifest["dataset"]["name"],
                     "folder": manifest_path.parent, "layout": layout, "n_last": layout.n_last if
                     layout.kind == "tokens" else 0, "test_ids": test.get("ids_sha"), "n": test["n"]})
    return pd.DataFrame(rows, columns=["backbone", "dataset", "folder", "layout", "n_last", "test_ids", "n"])


def _test_features(folder: Path, layout: BundleLayout, feature: str, rows: int) -> np.ndarray:
    from radbench.arrayfile import verify

    path = folder / "test.npy"
    verify(path, rows)
    return np.load(path, mmap_mode="r")[:, layout.columns(feature)]


def _served(layout: BundleLayout, feature: str) -> str:
    return "pool" if layout.kind == "pooled" else feature


def backbone_cka(output_dir: Path, dataset: str, feature: str = "cls", unbiased: bool = False) -> pd.DataFrame:
    """Backbone x backbone CKA on `dataset`'s test images (`feature`: cls, mean, ...; pooled models serve their
    pooled vector). Only backbones whose cached test split holds the same images in the same order."""
    entries = cached_entries(output_dir)
    entries = entries[entries.dataset == dataset].sort_values("n_last").drop_duplicates("backbone", keep="last")
    if entries.empty:
        return pd.DataFrame()
    common = entries.test_ids.value_counts().index[0]
    entries = entries[entries.test_ids == common].sort_values("backbone")
    features = {row.backbone: _test_features(row.folder, row.layout, _served(row.layout, feature), row.n)
                for row in entries.itertuples()}
    names = list(features)
    matrix = np.ones((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            matrix[i, j] = matrix[j, i] = linear_cka(features[a], features[names[j]], unbiased)
    return pd.DataFrame(matrix, index=names, columns=names)


def layer_cka(output_dir: Path, backbone: str, dataset: str, unbiased: bool = False) -> pd.DataFrame:
    """Block x block CKA of one backbone's cached CLS tokens (the last `n_last` blocks the cache holds; cache more
    with `features: [lastN]`, or run `decapitation`, which caches every block)."""
    entries = cached_entries(output_dir)
    entries = entries[(entries.dataset == dataset) & (entries.backbone == backbone) & (entries.n_last > 1)]
    if entries.empty:
        return pd.DataFrame()
    row = entries.sort_values("n_last").iloc[-1]
    layout: BundleLayout = row.layout
    bundle = _test_features(row.folder, layout, f"last{layout.n_last}", row.n)
    depth = layout.depth or layout.n_last
    names = [f"block{depth - layout.n_last + b + 1}" for b in range(layout.n_last)]
    blocks = [bundle[:, b * layout.dim:(b + 1) * layout.dim] for b in range(layout.n_last)]
    matrix = np.ones((len(blocks), len(blocks)))
    for i in range(len(blocks)):
        for j in range(i + 1, len(blocks)):
            matrix[i, j] = matrix[j, i] = linear_cka(blocks[i], blocks[j], unbiased)
    return pd.DataFrame(matrix, index=names, columns=names)

"""Pictures for "Where each model fails": thumbnails of the test cases each backbone gets most confidently wrong,
and for a few of them the training images nearest to the case under each backbone's cached features (what a kNN
"sees"). Images are read again from the dataset as the study configured it (MedMNIST arrays included); features
come from the study's feature cache, used only where its splits hold the same samples as the dataset read now.
Their number is bounded: `count` cases per backbone, `queries` cases with `neighbours` images each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from radbench.report.figures import _pyplot


def study_dataset(config: dict):
    """The study's dataset of a job's stored configuration, read as the study read it (2D only; None for 3D)."""
    from radbench.data import ADAPTERS, load_dataset

    dataset = config["dataset"]
    if dataset.get("volume") is not None:
        return None
    model = ADAPTERS.get(dataset["adapter"]).config
    given = {k: v for k, v in dataset.items() if k in model.model_fields}
    if given.get("task") == "segmentation":  # the job's record, not a setting of the adapter
        del given["task"]
    return load_dataset(model.model_validate(given))


def loaded_dataset(config: dict):
    """`study_dataset`, or None where the store did not record how its data was read (no pictures of it)."""
    return study_dataset(config) if "adapter" in config.get("dataset", {}) else None


def _shown(image: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] for display (any dtype, channels averaged)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.mean(-1) if image.shape[-1] in (1, 3, 4) else image.mean(0)
    low, high = np.nanpercentile(image, [1, 99]) if image.size else (0.0, 1.0)
    return np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)


def _image(split, sample_id: str) -> np.ndarray:
    index = {str(s): i for i, s in enumerate(split.sample_ids)}[str(sample_id)]
    return _shown(split.images.load(index))


def error_thumbnails(dataset, errors: pd.DataFrame, title: str):
    """Rows: backbones; columns: their most confidently wrong cases (thumbnail, truth, p(truth), patient)."""
    plt = _pyplot()
    test = dataset.splits["test"]
    backbones = list(dict.fromkeys(errors.backbone))
    columns = int(errors.groupby("backbone").size().max())
    figure, axes = plt.subplots(len(backbones), columns, figsize=(1.7 * columns + 0.6, 2.0 * len(backbones)),
                                squeeze=False)
    for row, backbone in enumerate(backbones):
        cases = errors[errors.backbone == backbone]
        for column in range(columns):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column >= len(cases):
                axis.axis("off")
                continue
            case = cases.iloc[column]
            axis.imshow(_image(test, case.sample_id), cmap="gray")
            patient = "" if str(case.patient_id) == str(case.sample_id) else f" · patient {case.patient_id}"
            axis.set_title(f"{case.sample_id}\ntruth {case.truth}\np(truth) {case.p_truth:.2f}{patient}", fontsize=6)
            if column == 0:
                axis.set_ylabel(backbone, fontsize="small")
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return figure


BANK = ("train", "val")  # the images a kNN's test predictions search (its refit bank)


def _cached(output_dir: Path, dataset_name: str, dataset, jobs: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per backbone: (train + val, test) features from the cache — the entry and feature type its job of this
    protocol read (a kNN's own view), else its CLS / pooled vector — where the cache holds this dataset's samples."""
    from radbench.backbones.layout import BundleLayout
    from radbench.features.cache import ids_digest
    from radbench.report.cka import _served, cached_entries

    entries = cached_entries(output_dir)
    entries = entries[entries.dataset == dataset_name]
    out = {}
    for backbone in sorted(set(jobs.backbone)):
        job = jobs[jobs.backbone == backbone].iloc[0]
        selected = job.selected if isinstance(job.selected, dict) else json.loads(job.selected or "{}")
        folder = Path(output_dir) / "features" / str(job.feature_cache) if job.feature_cache else None
        if folder is None or not (folder / "manifest.json").is_file():
            own = entries[entries.backbone == backbone]
            if own.empty:
                continue
            folder, selected = own.folder.iloc[0], {"feature": _served(own.layout.iloc[0], "cls")}
        manifest = json.loads((folder / "manifest.json").read_text())
        splits = manifest["splits"]
        if any(splits[name].get("ids_sha") != ids_digest(dataset.splits[name].sample_ids) for name in (*BANK, "test")):
            continue  # another limit or split than the dataset read now: its rows are not these images
        layout = BundleLayout(**manifest["layout"])
        columns = layout.columns(selected.get("feature") or _served(layout, "cls"))
        bank, test = (np.concatenate([np.load(folder / f"{name}.npy", mmap_mode="r")[:, columns]
                                      for name in names]).astype(np.float64) for names in (BANK, ("test",)))
        out[backbone] = (bank, test)
    return out


def nearest_cases(output_dir: Path, dataset_name: str, dataset, jobs: pd.DataFrame, cases: list[str],
                  neighbours: int = 4) -> pd.DataFrame:
    """backbone, case, rank, split, sample_id, label, similarity: each case's `neighbours` most similar train / val
    images by cosine of each backbone's cached features as `jobs` read them (empty when no cache matches)."""
    features = _cached(output_dir, dataset_name, dataset, jobs)
    test_index = {str(s): i for i, s in enumerate(dataset.splits["test"].sample_ids)}
    where = [(name, i) for name in BANK for i in range(len(dataset.splits[name].sample_ids))]
    names = list(dataset.class_names)
    rows = []
    for backbone in sorted(features):
        bank, queries = features[backbone]
        norms = np.linalg.norm(bank, axis=1)
        for case in cases:
            query = queries[test_index[str(case)]]
            similarity = (bank @ query) / (norms * np.linalg.norm(query) + 1e-12)
            for rank, index in enumerate(np.argsort(-similarity, kind="stable")[:neighbours], start=1):
                split, row = where[index]
                label = np.asarray(dataset.splits[split].labels)[row]
                name = names[int(label)] if np.ndim(label) == 0 else \
                    "+".join(n for n, v in zip(names, label) if v == 1) or "none"
                rows.append({"backbone": backbone, "case": str(case), "rank": rank, "split": split,
                             "sample_id": str(dataset.splits[split].sample_ids[row]), "label": name,
                             "similarity": float(similarity[index])})
    return pd.DataFrame(rows, columns=["backbone", "case", "rank", "split", "sample_id", "label", "similarity"])


def nearest_training_images(neighbours: pd.DataFrame, dataset_name: str, dataset):
    """For each case: a row per backbone, the case then its nearest training images (`nearest_cases`) with their
    labels and similarities. None when there are none."""
    if neighbours.empty:
        return None
    plt = _pyplot()
    test = dataset.splits["test"]
    rows = list(neighbours.groupby(["case", "backbone"], sort=False))
    width = int(neighbours["rank"].max())
    figure, axes = plt.subplots(len(rows), width + 1, figsize=(1.6 * (width + 1) + 0.6, 1.9 * len(rows)),
                                squeeze=False)
    for row, ((case, backbone), found) in enumerate(rows):
        axes[row][0].imshow(_image(test, case), cmap="gray")
        axes[row][0].set_title(f"test case {case}", fontsize=6)
        axes[row][0].set_ylabel(backbone, fontsize="small")
        for column, hit in enumerate(found.itertuples(), start=1):
            axes[row][column].imshow(_image(dataset.splits[hit.split], hit.sample_id), cmap="gray")
            axes[row][column].set_title(f"{hit.label} · cos {hit.similarity:.2f}", fontsize=6)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(f"{dataset_name}: nearest training images under each backbone's features", fontsize="medium")
    figure.tight_layout()
    return figure

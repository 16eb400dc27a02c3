"""The feature cache: one extraction serves every protocol and seed; keys follow content; crashes keep work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radbench.config import parse_study
from radbench.progress import Reporter
from radbench.runner import run_study
from tests.conftest import tiny_study


def study_for(tmp_path, pneumonia_npz, **settings):
    datasets = [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80}]
    raw = tiny_study(tmp_path, datasets, **settings)
    return parse_study(raw, base_dir=tmp_path)


def cache_folders(tmp_path):
    return sorted(p.name for p in (tmp_path / "out" / "features").iterdir() if not p.name.startswith("."))


def test_cache_layout_and_contents(tmp_path, pneumonia_npz):
    study = study_for(tmp_path, pneumonia_npz)
    summary = run_study(study, Reporter(quiet=True))
    assert [e.split for e in summary.extractions] == ["train", "val", "test"]
    (folder_name,) = cache_folders(tmp_path)
    folder = tmp_path / "out" / "features" / folder_name
    assert folder_name.endswith("-L1") and len(folder_name.split("-")[0]) == 16  # content hash + layout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["splits"]["train"]["n"] == 80
    assert manifest["preprocess"]["image_size"] == 32 and manifest["preprocess"]["mode"] == "resize"
    train = np.load(folder / "train.npy", mmap_mode="r")
    assert isinstance(train, np.memmap) and train.dtype == np.float16 and train.shape == (80, 128)
    assert not list(folder.glob(".*"))  # no temporary files left behind

    # the cached rows equal a direct forward pass of the same images
    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.data import load_dataset
    from radbench.data.transforms import Preprocess

    dataset = load_dataset(study.datasets[0])
    backbone = build_backbone(BackboneConfig(name="timm:test_vit", weights="none"), 32)
    preprocess = Preprocess(32, "resize", (0.5,) * 3, (0.5,) * 3, "bicubic")
    images = torch.stack([preprocess(dataset.splits["train"].images.load(i)) for i in range(5)])
    with torch.no_grad():
        direct = backbone.forward_bundle(images, backbone.layout(1)).numpy()
    np.testing.assert_allclose(train[:5].astype(np.float32), direct, rtol=2e-3, atol=2e-3)


def test_key_changes_with_what_changes_the_numbers(tmp_path, pneumonia_npz):
    run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, image_size=48), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, resize="pad"), Reporter(quiet=True))
    run_study(study_for(tmp_path, pneumonia_npz, cache_dtype="float32"), Reporter(quiet=True))
    assert len({name.split("-")[0] for name in cache_folders(tmp_path)}) == 4
    # renaming the study or adding a protocol changes no number: nothing is extracted
    again = run_study(study_for(tmp_path, pneumonia_npz, name="renamed", protocols=[{"knn": {"k": [3]}}]),
                      Reporter(quiet=True))
    assert again.extractions == [] and again.jobs_run == 1


def _cached_train(tmp_path) -> dict[str, np.ndarray]:
    root = tmp_path / "out" / "features"
    return {name: np.load(root / name / "train.npy") for name in cache_folders(tmp_path)}


@pytest.mark.parametrize("change", [{"split_seed": 1}, {"balance": True}], ids=["split_seed", "limit_rows"])
def test_other_rows_at_equal_sizes_are_a_new_cache_entry(tmp_path, pneumonia_npz, change):
    """Only which images `limit` keeps changes (same file, same split sizes): the cache must not serve the first
    draw's features for the second (the sample-list digest in the key is what tells them apart)."""
    def study(**dataset_keys):
        datasets = [{"name": "pneumonia", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80,
                     **dataset_keys}]
        return parse_study(tiny_study(tmp_path, datasets, protocols=[{"knn": {"k": [3]}}]), base_dir=tmp_path)

    first = run_study(study(), Reporter(quiet=True))
    second = run_study(study(**change), Reporter(quiet=True))
    assert [e.images for e in first.extractions] == [e.images for e in second.extractions] == [80, 80, 80]
    assert second.jobs_run == 1 and len(second.extractions) == 3  # extracted again, not served from the cache
    features = list(_cached_train(tmp_path).values())
    assert len(features) == 2 and not np.array_equal(*features)  # other images, other features


def test_more_blocks_extend_the_cache_and_fewer_reuse_it(tmp_path, pneumonia_npz):
    run_study(study_for(tmp_path, pneumonia_npz, features=["cls", "last3+mean"]), Reporter(quiet=True))
    assert cache_folders(tmp_path)[0].endswith("-L3")
    fewer = run_study(study_for(tmp_path, pneumonia_npz, features=["mean", "last2"]), Reporter(quiet=True))
    assert fewer.extractions == [] and fewer.jobs_run == 3


def test_interrupted_extraction_keeps_finished_splits(tmp_path, pneumonia_npz, monkeypatch):
    import radbench.features.provider as provider

    real = provider.extract_bundle
    calls = []

    def crash_on_val(*args, **kwargs):
        calls.append(kwargs["description"])
        if kwargs["description"].endswith("/ val"):
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the val split
        return real(*args, **kwargs)

    monkeypatch.setattr(provider, "extract_bundle", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    (folder,) = (tmp_path / "out" / "features").iterdir()
    assert (folder / "train.npy").exists() and not (folder / "manifest.json").exists()
    monkeypatch.setattr(provider, "extract_bundle", real)
    summary = run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    assert [e.split for e in summary.extractions] == ["val", "test"]
    assert (folder / "manifest.json").exists() and summary.jobs_run == 3


def _damage(path, how):
    if how == "nan":
        array = np.load(path)
        array[:] = np.nan
        with open(path, "wb") as handle:  # the same size and header: only the checksum/finiteness can tell
            np.save(handle, array)
    elif how == "random bytes":
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif how == "half rows":
        array = np.load(path)
        np.save(path, array[: len(array) // 2])
    elif how == "zero bytes":
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how", ["nan", "random bytes", "half rows", "zero bytes", "missing"])
def test_damaged_feature_split_is_re_extracted_and_never_scored(tmp_path, pneumonia_npz, how):
    from radbench.results import ResultsStore

    study = study_for(tmp_path, pneumonia_npz, protocols=[{"knn": {"k": [5]}}])
    run_study(study, Reporter(quiet=True))
    before = ResultsStore(tmp_path / "out" / "results.sqlite").metrics()
    (folder,) = [p for p in (tmp_path / "out" / "features").iterdir() if p.name.endswith("-L1")]
    _damage(folder / "train.npy", how)
    (tmp_path / "out" / "results.sqlite").unlink()  # the job must be computed again, from the repaired cache

    messages = []
    reporter = Reporter(quiet=True)
    reporter.warn = messages.append
    summary = run_study(study, reporter)
    assert [e.split for e in summary.extractions] == ["train"], messages
    if how != "missing":
        assert any(str(folder / "train.npy") in m for m in messages), messages
    after = ResultsStore(tmp_path / "out" / "results.sqlite").metrics()
    scores = ~before.metric.isin(["train_seconds", "infer_ms_per_image", "peak_mem_mb"])
    assert before[scores].value.notna().all()
    assert after[scores].value.tolist() == before[scores].value.tolist()  # as from the undamaged cache


def test_no_repair_stops_on_a_damaged_split_without_storing(tmp_path, pneumonia_npz, cli):
    from tests.conftest import write_study

    raw = tiny_study(tmp_path, [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 80}],
                     [{"knn": {"k": [5]}}])
    path = write_study(tmp_path, raw)
    assert cli("run", path).exit_code == 0
    (folder,) = [p for p in (tmp_path / "out" / "features").iterdir() if p.name.endswith("-L1")]
    _damage(folder / "val.npy", "random bytes")
    (tmp_path / "out" / "results.sqlite").unlink()
    result = cli("run", path, "--no-repair")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(folder / "val.npy") in line and "checksum" in line
    from radbench.results import ResultsStore

    assert ResultsStore(tmp_path / "out" / "results.sqlite").jobs().empty


def test_garbage_manifest_is_rewritten_without_re_extracting(tmp_path, pneumonia_npz):
    study = study_for(tmp_path, pneumonia_npz, protocols=[{"knn": {"k": [5]}}])
    run_study(study, Reporter(quiet=True))
    (folder,) = [p for p in (tmp_path / "out" / "features").iterdir() if p.name.endswith("-L1")]
    (folder / "manifest.json").write_text("{not json")
    (tmp_path / "out" / "results.sqlite").unlink()
    summary = run_study(study, Reporter(quiet=True))
    assert summary.extractions == [] and summary.jobs_run == 1
    assert json.loads((folder / "manifest.json").read_text())["splits"]["train"]["n"] == 80


def test_stale_temporaries_are_cleaned_and_failed_writes_leave_none(tmp_path, monkeypatch):
    import errno
    import socket

    from radbench import arrayfile

    folder = tmp_path / "cache"
    folder.mkdir()
    dead = folder / f".train.npy~{socket.gethostname()}~999999999.tmp"  # no such process
    alive = arrayfile.temporary_path(folder / "val.npy")  # this process: still writing
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    assert arrayfile.clean_stale_temporaries(folder) == [dead]
    assert alive.exists() and not dead.exists()
    alive.unlink()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(KeyboardInterrupt), arrayfile.filling(folder / "taps.npy", np.float16, (4, 2)) as fill:
        fill.array[:2] = 1.0
        raise KeyboardInterrupt  # killed while filling: neither the array nor its temporary remains
    assert list(folder.iterdir()) == []
    with arrayfile.filling(folder / "taps.npy", np.float16, (4, 2)) as fill:
        fill.array[:] = 2.0
    assert arrayfile.verify(folder / "taps.npy")["shape"] == [4, 2]
    arrayfile.discard(folder / "taps.npy")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(arrayfile.CacheWriteError, match="disk full"):
        arrayfile.write(folder / "train.npy", np.zeros((3, 2)))
    assert list(folder.iterdir()) == []


def test_extraction_cost_covers_every_split_after_a_resumed_extraction(tmp_path, pneumonia_npz, monkeypatch):
    import radbench.features.provider as provider

    real = provider.extract_bundle

    def crash_on_test(*args, **kwargs):
        if kwargs["description"].endswith("/ test"):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(provider, "extract_bundle", crash_on_test)
    with pytest.raises(KeyboardInterrupt):
        run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    monkeypatch.setattr(provider, "extract_bundle", real)
    run_study(study_for(tmp_path, pneumonia_npz), Reporter(quiet=True))
    (folder,) = [p for p in (tmp_path / "out" / "features").iterdir() if p.name.endswith("-L1")]
    seconds = json.loads((folder / "manifest.json").read_text())["extract_seconds"]
    assert set(seconds) == {"train", "val", "test"} and all(v > 0 for v in seconds.values())


def test_an_array_linked_from_another_split_is_refused_and_rebuilt(tmp_path):
    """A split's array and record replaced by links to another split's (same size, valid on their own): the record
    names the split and sample list it was written for, so the cache refuses it (and rebuilds it when repairing)."""
    from radbench.backbones import BundleLayout
    from radbench.features.cache import FeatureCache, split_identity

    messages = []
    cache = FeatureCache(tmp_path, warn=messages.append)
    layout = BundleLayout(kind="pooled", dim=4)
    folder = cache.folder("k", layout)
    val, test = split_identity("val", ["a", "b", "c"]), split_identity("test", ["d", "e", "f"])
    cache.write_split("k", layout, "val", np.ones((3, 4)), "float32", 0.1, val)
    cache.write_split("k", layout, "test", np.zeros((3, 4)), "float32", 0.1, test)
    assert cache.split_intact(folder, "test", test) and cache.split_intact(folder, "val", val)
    for name in ("test.npy", "test.npy.json"):
        (folder / name).unlink()
        (folder / name).symlink_to(folder / name.replace("test", "val"))
    assert not cache.split_intact(folder, "test", test)
    assert "written for split 'val', not 'test'" in messages[-1] and not (folder / "test.npy").exists()
    assert not cache.split_intact(folder, "val", split_identity("val", ["a", "b", "x"]))  # same name, other samples
    assert "another list of samples" in messages[-1]

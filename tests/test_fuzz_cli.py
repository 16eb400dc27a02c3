"""Fuzz: distinct bad inputs through the CLI. For each: exit code 2, one `error:` line naming the culprit, no
traceback, no job stored, and — for input errors — no model built (only the weights/architecture cases reach
the model, whose construction is the check)."""

from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_study


def base(data: dict) -> dict:
    return tiny_study(data["root"], [{"name": "p", "adapter": "medmnist", "path": str(data["npz"]), "limit": 40}],
                      [{"knn": {"k": [3]}}])


def edit(path: str, value):
    """A study with one key (dotted path, list indices as numbers) set to `value` (None deletes it)."""

    def make(data):
        study = base(data)
        *parents, last = path.split(".")
        node = study
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is None:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value(data) if callable(value) else value
        return study

    return make


def dataset(entry):
    def make(data):
        study = base(data)
        study["datasets"] = [entry(data) if callable(entry) else entry]
        return study

    return make


def csv_entry(csv_name, **keys):
    return lambda data: {"name": "c", "adapter": "csv", "path": str(data["root"] / csv_name), "image_column": "path",
                         "label_columns": ["label"], **keys}


def protocol(entry):
    def make(data):
        study = base(data)
        study["protocols"] = [entry]
        return study

    return make


def text(body: str):
    return lambda data: body.replace("NPZ", str(data["npz"]))


SHENZHEN = {"adapter": "mask_folder", "images": "train_images", "masks": "train_masks", "mask_suffix": "_mask"}

# (case id, study builder, substring the error line must contain, reaches the model)
CASES = [
    ("yaml syntax", text("name: s\noutput_dir: out\nbackbones: [\n"), "invalid YAML", False),
    ("yaml duplicate key", text("name: a\nname: b\noutput_dir: o\nbackbones: []\ndatasets: []\nprotocols: []\n"),
     "key 'name' is given twice (lines 1 and 2)", False),
    ("yaml duplicate nested key", text("name: s\noutput_dir: o\nbackbones: [{name: dinov2_vits14, name: x}]\n"
                                       "datasets: []\nprotocols: []\n"), "key 'name' is given twice", False),
    ("study is a list", text("- name: s\n"), "must be a mapping", False),
    ("missing name", edit("name", None), "name: Field required", False),
    ("missing output_dir", edit("output_dir", None), "output_dir: Field required", False),
    ("empty backbones", edit("backbones", []), "backbones: a non-empty list is required", False),
    ("missing datasets", edit("datasets", None), "datasets: a non-empty list is required", False),
    ("protocols not a list", edit("protocols", "knn"), "protocols: a non-empty list is required", False),
    ("unknown top key", edit("seedz", [1]), "seedz: unknown key", False),
    ("unknown backbone key", edit("backbones.0.weigths", "none"), "backbones[0].weigths: unknown key", False),
    ("unknown backbone", edit("backbones.0.name", "dinov3_vitx99"), "unknown backbone 'dinov3_vitx99'", False),
    ("unknown timm model", edit("backbones.0.name", "timm:no_such_net"), "unknown timm model 'no_such_net'", False),
    ("unknown adapter", edit("datasets.0.adapter", "dicomdir"), "unknown adapter 'dicomdir'", False),
    ("unknown protocol", protocol({"svm": {}}), "unknown protocol 'svm'", False),
    ("unknown protocol key", protocol({"knn": {"kk": [3]}}), "protocols[0].knn.kk: unknown key", False),
    ("knn k negative", protocol({"knn": {"k": [-5]}}), "protocols[0].knn.k[0]", False),
    ("knn k zero", protocol({"knn": {"k": [0]}}), "protocols[0].knn.k[0]", False),
    ("knn k text", protocol({"knn": {"k": ["ten"]}}), "protocols[0].knn.k[0]", False),
    ("linear lr negative", protocol({"linear": {"lr": [-0.1]}}), "protocols[0].linear.lr[0]", False),
    ("linear epochs zero", protocol({"linear": {"epochs": 0}}), "protocols[0].linear.epochs", False),
    ("linear momentum one", protocol({"linear": {"momentum": 1.0}}), "protocols[0].linear.momentum", False),
    ("logreg C zero", protocol({"logreg": {"C": [0.0]}}), "protocols[0].logreg.C[0]", False),
    ("few_shot shots zero", protocol({"few_shot": {"shots": [0]}}), "protocols[0].few_shot.shots[0]", False),
    ("finetune lr negative", protocol({"finetune": {"lr": [-1e-4]}}), "protocols[0].finetune.lr[0]", False),
    ("empty lr grid", protocol({"linear": {"lr": []}}), "protocols[0].linear.lr", False),
    ("protocol entry with two keys", protocol({"knn": {}, "linear": {}}), "write each protocol as", False),
    ("empty seeds", edit("seeds", []), "seeds", False),
    ("image_size tiny", edit("image_size", 4), "image_size", False),
    ("precision bogus", edit("precision", "fp8"), "precision", False),
    ("device bogus", edit("device", "tpu"), "device must be auto", False),
    ("feature type bogus", edit("features", ["cls", "last0"]), "features", False),
    ("feature type unknown", edit("features", ["pooler"]), "unknown feature type 'pooler'", False),
    ("selection metric bogus", edit("selection_metric", "auprc"), "unknown metric 'auprc'", False),
    ("cache dtype bogus", edit("cache_dtype", "int8"), "cache_dtype", False),
    ("batch size zero", edit("batch_size", 0), "batch_size", False),
    ("data file missing", edit("datasets.0.path", "nowhere.npz"), "nowhere.npz", False),
    ("weights file missing", edit("backbones.0.weights", "missing.pth"), "missing.pth", False),
    ("limit zero", edit("datasets.0.limit", 0), "limit must be a positive integer", False),
    ("split fractions", edit("datasets.0.split_fractions", [0.5, 0.5, 0.5]), "split_fractions", False),
    ("dataset not a mapping", edit("datasets.0", "pneumonia"), "datasets[0]: needs an `adapter` key", False),
    ("window preset bogus", edit("datasets.0.intensity", {"window": "liver"}), "datasets[0].intensity", False),
    ("duplicate dataset names", lambda d: {**base(d), "datasets": base(d)["datasets"] * 2},
     "datasets: 'p' appears twice", False),
    ("duplicate backbone names", lambda d: {**base(d), "backbones": base(d)["backbones"] * 2},
     "backbones: 'timm:test_vit' appears twice", False),
    ("segmentation protocol without segmentation data",
     lambda d: {**base(d), "protocols": [{"knn": {"k": [3]}}, {"segmentation": {}}]},
     "'segmentation' needs a segmentation dataset", False),
    ("npz without medmnist keys", edit("datasets.0.path", lambda d: str(d["other_npz"])), "not a MedMNIST npz",
     False),
    ("csv image column missing", dataset(csv_entry("images.csv", image_column="file")), "'file'", False),
    ("csv label column missing", dataset(csv_entry("images.csv", label_columns=["Effusion"])), "'Effusion'", False),
    ("csv image not found", dataset(csv_entry("missing_image.csv")), "line 4: image file not found", False),
    ("csv image listed twice", dataset(csv_entry("twice.csv")), "is listed twice", False),
    ("csv binary typo", dataset(csv_entry("typo.csv", task="binary")), "line 6: task binary", False),
    ("csv class not in class_names", dataset(csv_entry("images.csv", class_names=["no", "maybe"])),
     "label 'yes' is not one of class_names", False),
    ("csv folder among images", dataset(csv_entry("folder.csv")), "is a folder, the other rows are 2D images",
     False),
    ("csv split value", dataset(csv_entry("split.csv", split_column="split")), "split value 'trian'", False),
    ("csv header only", dataset(csv_entry("empty.csv")), "no rows", False),
    ("csv multilabel value", dataset(csv_entry("multi.csv", label_columns=["a", "b"])), "has value '2'", False),
    ("csv patient in two splits", dataset(csv_entry("leak.csv", split_column="split", patient_column="patient")),
     "'P1'", False),
    ("truncated png", dataset(csv_entry("truncated.csv")), "i3.png", False),
    ("text file named png", dataset(csv_entry("textpng.csv")), "notes.png", False),
    ("truncated nifti volume", dataset(csv_entry("volumes.csv", volume={"slices": "every", "every": 2})),
     "v3.nii.gz: cannot read NIfTI", False),
    ("few-shot more shots than patients", protocol({"few_shot": {"shots": [1, 64], "repeats": 1}}),
     "fewer than 64 shots", False),
    ("mask value outside mask_values",
     lambda d: {**base(d), "datasets": [{"name": "lungs", "path": str(d["shenzhen"]), **SHENZHEN,
                                         "mask_values": {"0": 0}}], "protocols": [{"segmentation": {"epochs": 1}}]},
     "_mask.png: mask value 1 is not in mask_values [0]", False),
    ("output_dir is a file", edit("output_dir", lambda d: str(d["a_file"])), "a_file", False),
    ("cache_dir is a file", edit("cache_dir", lambda d: str(d["a_file"])), "a_file", False),
    ("output_dir on a read-only file system", edit("output_dir", "/proc/radbench-out"), "/proc/radbench-out",
     False),
    ("garbage checkpoint", edit("backbones.0.weights", lambda d: str(d["garbage_ckpt"])),
     "garbage.pth: cannot read checkpoint", True),
    ("image_size not a multiple of the patch", edit("image_size", 40), "not a multiple of its patch size 16", True),
]


@pytest.fixture(scope="module")
def fuzz_data(tmp_path_factory, shared_data):
    """Small files with one defect each, written once for the module."""
    import nibabel as nib
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    rows = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "img" / f"i{i}.png")
        rows.append((f"img/i{i}.png", "yes" if i % 2 else "no"))

    def write(name, lines, header="path,label"):
        (root / name).write_text("\n".join([header, *lines]) + "\n")

    write("images.csv", [f"{p},{label}" for p, label in rows])
    write("missing_image.csv", [f"{p},{label}" for p, label in rows[:2]] + ["img/gone.png,no"])
    write("twice.csv", [f"{p},{label}" for p, label in rows] + [f"{rows[0][0]},no"])
    typo = [f"{p},{label}" for p, label in rows]
    typo[4] = f"{rows[4][0]},nope"
    write("typo.csv", typo)
    (root / "img" / "sub").mkdir()
    write("folder.csv", [f"{p},{label}" for p, label in rows] + ["img/sub,no"])
    write("split.csv", [f"{p},{label},{'trian' if i == 5 else 'train'}" for i, (p, label) in enumerate(rows)],
          "path,label,split")
    write("empty.csv", [])
    write("multi.csv", [f"{p},{i % 2},{2 if i == 3 else 0}" for i, (p, _) in enumerate(rows)], "path,a,b")
    write("leak.csv", [f"{p},{label},{['train', 'val', 'test'][i % 3]},{'P1' if i in (0, 1) else f'Q{i}'}"
                       for i, (p, label) in enumerate(rows)], "path,label,split,patient")
    data = (root / "img" / "i3.png").read_bytes()
    shutil_copy = root / "img" / "cut"
    shutil_copy.mkdir()
    for i, (p, _) in enumerate(rows):
        target = shutil_copy / Path(p).name
        target.write_bytes((root / p).read_bytes() if i != 3 else data[: len(data) // 3])
    write("truncated.csv", [f"img/cut/{Path(p).name},{label}" for p, label in rows])
    (root / "img" / "notes.png").write_text("not an image\n")
    write("textpng.csv", [f"{p},{label}" for p, label in rows] + ["img/notes.png,no"])
    (root / "vol").mkdir()
    for i in range(10):
        nib.save(nib.Nifti1Image(rng.random((12, 12, 6)).astype(np.float32), np.eye(4)), root / "vol" / f"v{i}.nii.gz")
    data = (root / "vol" / "v3.nii.gz").read_bytes()
    (root / "vol" / "v3.nii.gz").write_bytes(data[: len(data) // 2])
    write("volumes.csv", [f"vol/v{i}.nii.gz,{'yes' if i % 2 else 'no'}" for i in range(10)])
    np.savez(root / "other.npz", x=np.zeros((3, 8, 8)))
    (root / "a_file").write_text("I am a file\n")
    (root / "garbage.pth").write_bytes(os.urandom(2048))
    return {"root": root, "npz": shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz",
            "other_npz": root / "other.npz", "shenzhen": shared_data / "cxr_lung_seg_shenzhen",
            "a_file": root / "a_file", "garbage_ckpt": root / "garbage.pth"}


def test_there_are_at_least_sixty_distinct_cases():
    assert len({case[0] for case in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize("name,build,culprit,reaches_model", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, build, culprit, reaches_model, fuzz_data, cli, tmp_path, monkeypatch):
    import radbench.features.provider as provider

    built = []
    real_build = provider.build_backbone
    monkeypatch.setattr(provider, "build_backbone", lambda *a, **k: built.append(a) or real_build(*a, **k))
    data = {**fuzz_data, "root": tmp_path}
    for key in ("npz", "other_npz", "shenzhen", "a_file", "garbage_ckpt"):
        data[key] = fuzz_data[key]
    for name_ in os.listdir(fuzz_data["root"]):  # the csv files resolve images against their own folder
        if not (tmp_path / name_).exists():
            (tmp_path / name_).symlink_to(fuzz_data["root"] / name_)
    study = build(data)
    path = tmp_path / "study.yaml"
    path.write_text(study if isinstance(study, str) else yaml.safe_dump(copy.deepcopy(study), sort_keys=False))

    result = cli("run", path)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0], errors[0]
    assert reaches_model or not built, "a model was built before the input error was found"
    database = tmp_path / "out" / "results.sqlite"
    if database.exists():
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)

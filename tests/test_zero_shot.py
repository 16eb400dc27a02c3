"""Zero-shot classification (issue 25) with a tiny CLIP written by the tests (an open_clip config registered here,
weights saved as a checkpoint file): the stored scores equal open_clip's own encode_image / encode_text with the
same prompts; templates are chosen on val only; text embeddings are cached per prompt; bad prompts are one line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import run_cli, tiny_study, write_study

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / "radbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "radbench-tiny-clip.json")
    torch.manual_seed(1)
    model = open_clip.create_model("radbench-tiny-clip", pretrained=None)
    with torch.no_grad():  # a logit scale of its own, so that the test sees it used
        model.logit_scale.fill_(np.log(20.0))
    torch.save(model.state_dict(), folder / "tiny-clip.pt")
    return folder / "tiny-clip.pt"


def _study(folder: Path, weights: Path, datasets: list[dict], protocols: list[dict]) -> dict:
    return {**tiny_study(folder, datasets, protocols), "cache_dtype": "float32", "preprocess_cache": "off",
            "backbones": [{"name": "open_clip:radbench-tiny-clip", "weights": str(weights)}]}


def _pneumonia(shared_data: Path) -> dict:
    return {"name": "pneumonia", "adapter": "medmnist", "limit": 60,
            "path": str(shared_data / "medmnist" / "pneumoniamnist_kaggle_variant.npz")}


def _nih(shared_data: Path) -> dict:
    return {"name": "nih", "adapter": "csv", "path": str(shared_data / "nih_chestxray14_images" / "labels.csv"),
            "image_column": "Image Index", "label_columns": ["Effusion", "Atelectasis", "Infiltration"],
            "patient_column": "Patient ID"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data, tiny_clip):
    folder = tmp_path_factory.mktemp("zero-shot")
    protocols = [{"zero_shot": {"choose_template": True}},
                 {"few_shot": {"shots": [1, 4], "repeats": 2, "head": "logreg", "features": ["embed"]}},
                 {"knn": {"k": [5], "features": ["embed"]}}]
    study = write_study(folder, _study(folder, tiny_clip, [_pneumonia(shared_data), _nih(shared_data)], protocols))
    log = run_cli("run", study).output
    run_cli("report", folder / "out", "--resamples", "200")
    return folder, log


def _stored(folder: Path, dataset: str, protocol: str = "zero_shot"):
    import radbench

    results = radbench.load(folder / "out")
    job = results.jobs.query("dataset == @dataset and protocol == @protocol").iloc[0]
    predictions = results.predictions.query("job == @job.key")
    return job, predictions


def _direct(weights: Path, folder: Path, dataset_index: int, split: str, templates: list[str], phrases: dict,
            pair: bool, negation: str = "no {}") -> np.ndarray:
    """open_clip's own towers on the same pixels: encode_image, encode_text, the model's logit scale."""
    import open_clip
    import torch

    from radbench.config import load_study
    from radbench.data import load_dataset
    from radbench.data.transforms import Preprocess

    model = open_clip.create_model("radbench-tiny-clip", pretrained=str(weights)).eval()
    tokenizer = open_clip.get_tokenizer("radbench-tiny-clip")
    study = load_study(folder / "study.yaml")
    dataset = load_dataset(study.datasets[dataset_index])
    jobs = pd.DataFrame(sqlite3.connect(folder / "out" / "results.sqlite").execute(
        "SELECT dataset, config FROM jobs").fetchall(), columns=["dataset", "config"])
    identity = json.loads(jobs[jobs.dataset == dataset.name].config.iloc[0])["preprocess"]
    preprocess = Preprocess.from_identity(identity)
    images = dataset.splits[split].images
    with torch.no_grad():
        pixels = torch.stack([preprocess(images.load(i)) for i in range(len(images))])
        image = model.encode_image(pixels).double()
        image = image / image.norm(dim=1, keepdim=True)

        def classes(words: dict) -> torch.Tensor:
            """CLIP's prompt ensembling, as the README defines it: per class the mean of the normalised embeddings
            of every phrase in every template, normalised."""
            rows = []
            for options in words.values():
                text = model.encode_text(tokenizer([t.format(p) for t in templates for p in options])).double()
                mean = (text / text.norm(dim=1, keepdim=True)).mean(0)
                rows.append(mean / mean.norm())
            return torch.stack(rows)

        scale = float(model.logit_scale.exp())
        positive = scale * image @ classes(phrases).T
        if not pair:
            return torch.softmax(positive, dim=1).numpy()
        negative = scale * image @ classes({k: [negation.format(p) for p in v] for k, v in phrases.items()}).T
        return torch.softmax(torch.stack([negative, positive]), dim=0)[1].numpy()


def test_single_label_scores_equal_open_clip(run, tiny_clip):
    folder, _ = run
    job, predictions = _stored(folder, "pneumonia")
    details = job.details
    chosen = job.selected["templates"]
    templates = details["templates"] if chosen == "ensemble" else [chosen]
    phrases = {name: details["phrases"][name] for name in ("normal", "pneumonia")}
    expected = _direct(tiny_clip, folder, 0, "test", templates, phrases, pair=False)
    np.testing.assert_allclose(predictions[["score_normal", "score_pneumonia"]].to_numpy(), expected, atol=1e-5)
    assert details["logit_scale"] == pytest.approx(20.0, rel=1e-5)


def test_multilabel_pairs_equal_chexzero_softmax(run, tiny_clip):
    folder, _ = run
    job, predictions = _stored(folder, "nih")
    templates = job.details["templates"] if job.selected["templates"] == "ensemble" else [job.selected["templates"]]
    classes = ("Effusion", "Atelectasis", "Infiltration")  # the dataset's order (stored details sort their keys)
    phrases = {name: job.details["phrases"][name] for name in classes}
    expected = _direct(tiny_clip, folder, 1, "test", templates, phrases, pair=True)
    columns = [f"score_{c}" for c in classes]
    np.testing.assert_allclose(predictions[columns].to_numpy(), expected, atol=1e-5)
    assert job.details["phrases"]["Effusion"][0] == "pleural effusion"  # the built-in phrases


def test_template_chosen_on_val_and_auroc_recomputes(run, tiny_clip):
    folder, _ = run
    job, predictions = _stored(folder, "pneumonia")
    candidates = {c["params"]["templates"]: c["val"] for c in job.candidates}
    assert set(candidates) == {"ensemble", *job.details["templates"]}
    for template, value in candidates.items():
        templates = job.details["templates"] if template == "ensemble" else [template]
        phrases = {name: job.details["phrases"][name] for name in ("normal", "pneumonia")}
        val = _direct(tiny_clip, folder, 0, "val", templates, phrases, pair=False)
        from radbench.config import load_study
        from radbench.data import load_dataset

        labels = load_dataset(load_study(folder / "study.yaml").datasets[0]).splits["val"].labels
        assert value == pytest.approx(roc_auc_score(labels, val[:, 1]), abs=1e-6)
    assert job.selected["templates"] == max(candidates, key=candidates.get)
    stored = job.details["templates_test"]
    y = predictions.target_pneumonia.to_numpy()
    assert stored[job.selected["templates"]] == pytest.approx(roc_auc_score(y, predictions.score_pneumonia), abs=1e-9)


def test_report_draws_zero_shot_across_few_shot_and_prompt_table(run):
    folder, _ = run
    page = (folder / "out" / "report" / "index.html").read_text()
    assert "Prompt sensitivity (zero-shot)" in page and "Dashed: zero-shot" in page
    board = pd.read_csv(folder / "out" / "report" / "tables" / "leaderboard.csv")
    assert {"zero_shot", "few_shot@1shot", "few_shot@4shot"} <= set(board.protocol)


def test_text_embeddings_cached_per_prompt(tmp_path, tiny_clip):
    from radbench.backbones import BackboneConfig
    from radbench.features.text_cache import TextEncoder

    cfg = BackboneConfig(name="open_clip:radbench-tiny-clip", weights=str(tiny_clip))
    first = TextEncoder(cfg, {"weights": "tiny"}, tmp_path)
    a = first.embed(["pleural effusion", "pneumonia"])
    assert first.computed == 2
    again = TextEncoder(cfg, {"weights": "tiny"}, tmp_path)
    b = again.embed(["pneumonia", "a new prompt", "pleural effusion"])
    assert again.computed == 1  # only the changed prompt goes through the text tower
    np.testing.assert_array_equal(b[[2, 0]], a)
    other = TextEncoder(cfg, {"weights": "other"}, tmp_path)
    other.embed(["pneumonia"])
    assert other.computed == 1  # other weights: their own entries


@pytest.mark.parametrize("protocol, message", [
    ({"zero_shot": {"prompts": {"pneumonai": ["lung infection"]}}},
     "'pneumonai' is not a class of any dataset of this study (did you mean 'pneumonia'?)"),
    ({"zero_shot": {"prompts": {"pneumonia": []}}}, "prompts for 'pneumonia': give at least one non-empty phrase"),
    ({"zero_shot": {"templates": ["a chest x-ray"]}}, "needs exactly one {} where the phrase goes"),
])
def test_bad_prompts_are_one_line(tmp_path, shared_data, tiny_clip, cli, protocol, message):
    study = write_study(tmp_path, _study(tmp_path, tiny_clip, [_pneumonia(shared_data)], [protocol]))
    result = cli("run", study)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "building backbone" not in result.output and not (tmp_path / "out" / "results.sqlite").exists()


def test_a_backbone_without_text_tower_and_a_class_without_prompt(tmp_path, shared_data, tiny_clip, cli):
    study = tiny_study(tmp_path, [_pneumonia(shared_data)], [{"zero_shot": {}}])  # timm:test_vit, image-only
    result = cli("run", write_study(tmp_path, study))
    assert result.exit_code == 2 and "backbone 'timm:test_vit' has no text tower" in result.output
    breast = {"name": "breast", "adapter": "medmnist", "limit": 20,
              "path": str(shared_data / "medmnist" / "breastmnist_resaved.npz")}
    result = cli("run", write_study(tmp_path, _study(tmp_path, tiny_clip, [breast], [{"zero_shot": {}}]), "b.yaml"))
    assert result.exit_code == 2 and "no prompt for class" in result.output and "add `prompts:" in result.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory) -> Path:
    """A tiny transformers CLIPModel with CLIP's real BPE tokenizer (open_clip's bundled vocabulary), written by
    save_pretrained — loaded by radbench as `weights:` of an `hf:` backbone."""
    import open_clip
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("hf-clip")
    simple = open_clip.tokenizer.SimpleTokenizer()
    (folder / "vocab.json").write_text(json.dumps(simple.encoder))
    merges = sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "vocab_size": len(tokenizer), "max_position_embeddings": 77, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    torch.manual_seed(2)
    transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
                           ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                                    ).save_pretrained(folder)
    return folder


def test_transformers_clip_scores_equal_get_features(tmp_path, shared_data, hf_clip):
    import torch
    import transformers

    import radbench
    from radbench.config import load_study
    from radbench.data import load_dataset
    from radbench.data.transforms import Preprocess

    study = {**tiny_study(tmp_path, [_pneumonia(shared_data)], [{"zero_shot": {"templates": ["an x-ray of {}."]}}]),
             "cache_dtype": "float32", "backbones": [{"name": "hf:org/tiny-clip", "weights": str(hf_clip)}]}
    path = write_study(tmp_path, study)
    run_cli("run", path)
    results = radbench.load(tmp_path / "out")
    job = results.jobs.iloc[0]
    stored = results.predictions[["score_normal", "score_pneumonia"]].to_numpy()
    model = transformers.CLIPModel.from_pretrained(hf_clip).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(hf_clip)
    preprocess = Preprocess.from_identity(job.config["preprocess"])
    images = load_dataset(load_study(path).datasets[0]).splits["test"].images
    with torch.no_grad():
        pixels = torch.stack([preprocess(images.load(i)) for i in range(len(images))])
        image = model.get_image_features(pixel_values=pixels)
        image = getattr(image, "pooler_output", image).double()
        rows = []
        for name in ("normal", "pneumonia"):
            tokens = tokenizer([f"an x-ray of {p}." for p in job.details["phrases"][name]], padding=True,
                               return_tensors="pt")
            text = model.get_text_features(**tokens)
            text = getattr(text, "pooler_output", text).double()
            text = (text / text.norm(dim=1, keepdim=True)).mean(0)
            rows.append(text / text.norm())
        logits = float(model.logit_scale.exp()) * (image / image.norm(dim=1, keepdim=True)) @ torch.stack(rows).T
    np.testing.assert_allclose(stored, torch.softmax(logits, dim=1).numpy(), atol=1e-5)


MAP_POOLED = {"embed_dim": 64, "init_logit_bias": -10,
              "vision_cfg": {"image_size": 32, "timm_model_name": "test_vit", "timm_model_pretrained": False,
                             "timm_pool": "map", "timm_proj": "none"},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def test_sigmoid_scores_of_a_timm_tower_with_attention_pooling(tmp_path, shared_data):
    """An open_clip tower on a timm trunk that pools by attention (as SigLIP's), with a learned logit bias: the
    cached `embed` is encode_image, and `multilabel: sigmoid` is sigmoid(scale x cosine + bias)."""
    import open_clip
    import torch

    import radbench

    (tmp_path / "radbench-map-clip.json").write_text(json.dumps(MAP_POOLED))
    open_clip.add_model_config(tmp_path / "radbench-map-clip.json")
    torch.manual_seed(3)
    model = open_clip.create_model("radbench-map-clip", pretrained=None).eval()
    with torch.no_grad():
        model.logit_bias.fill_(0.5)  # scores near the middle, where a wrong bias or scale shows
    torch.save(model.state_dict(), tmp_path / "map.pt")
    nih = {**_nih(shared_data), "label_columns": ["Effusion", "Infiltration"]}
    study = {**_study(tmp_path, tmp_path / "map.pt", [nih], [{"zero_shot": {"multilabel": "sigmoid",
                                                                            "templates": ["{}."]}}]),
             "backbones": [{"name": "open_clip:radbench-map-clip", "weights": str(tmp_path / "map.pt")}]}
    path = write_study(tmp_path, study)
    run_cli("run", path)
    results = radbench.load(tmp_path / "out")
    job = results.jobs.iloc[0]
    from radbench.config import load_study
    from radbench.data import load_dataset
    from radbench.data.transforms import Preprocess

    preprocess = Preprocess.from_identity(job.config["preprocess"])
    images = load_dataset(load_study(path).datasets[0]).splits["test"].images
    tokenizer = open_clip.get_tokenizer("radbench-map-clip")
    with torch.no_grad():
        image = model.encode_image(torch.stack([preprocess(images.load(i)) for i in range(len(images))])).double()
        image = image / image.norm(dim=1, keepdim=True)
        rows = []
        for name in ("Effusion", "Infiltration"):
            text = model.encode_text(tokenizer([f"{p}." for p in job.details["phrases"][name]])).double()
            text = (text / text.norm(dim=1, keepdim=True)).mean(0)
            rows.append(text / text.norm())
        expected = torch.sigmoid(float(model.logit_scale.exp()) * image @ torch.stack(rows).T + float(model.logit_bias))
    stored = results.predictions[["score_Effusion", "score_Infiltration"]].to_numpy()
    assert 0.2 < stored.mean() < 0.95
    np.testing.assert_allclose(stored, expected.numpy(), rtol=1e-5, atol=1e-7)


class _FakeText:
    """Embeddings drawn from each prompt's own seed: what a text tower returns, without one."""

    def embed(self, prompts: list[str]) -> np.ndarray:
        import zlib

        return np.stack([np.random.default_rng(zlib.crc32(p.encode())).normal(size=16) + 1.0 for p in prompts])


def test_ensemble_is_the_mean_over_every_phrase_in_every_template():
    """The README's definition (CLIP's prompt ensembling over phrases too): per class, the mean of the normalised
    embeddings of every phrase in every template, normalised; one template alone: its phrases' mean, normalised."""
    from radbench.protocols.zero_shot import ENSEMBLE, class_embeddings

    phrases = [["pleural effusion", "fluid in the pleural space", "effusion"], ["pneumonia", "lung infection"]]
    templates = ["a chest x-ray showing {}.", "{}", "an image of {} on a radiograph."]
    got = class_embeddings(_FakeText(), phrases, templates)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    for c, options in enumerate(phrases):
        every = unit(_FakeText().embed([t.format(p) for t in templates for p in options]))
        np.testing.assert_allclose(got[ENSEMBLE][c], unit(every.mean(0)), atol=1e-12)
        for template in templates:
            alone = unit(_FakeText().embed([template.format(p) for p in options])).mean(0)
            np.testing.assert_allclose(got[template][c], unit(alone), atol=1e-12)
    per_template_first = unit(np.mean([got[t] for t in templates], axis=0))  # the other reading, which differs
    assert np.abs(per_template_first - got[ENSEMBLE]).max() > 1e-4


def test_random_weights_give_both_towers_from_one_model(tiny_clip):
    """weights: none at an image size other than the model's own (48 px for a 32 px model): the text tower is the
    one of the same seeded model the image tower comes from (the image size changes what the seed draws)."""
    import open_clip
    import torch

    from radbench.backbones import BackboneConfig, build_backbone
    from radbench.backbones.text import build_text_tower

    cfg = BackboneConfig(name="open_clip:radbench-tiny-clip", weights="none")
    torch.manual_seed(0)
    model = open_clip.create_model("radbench-tiny-clip", pretrained=None, force_image_size=48).eval()
    tokenizer = open_clip.get_tokenizer("radbench-tiny-clip")
    with torch.no_grad():
        expected = model.encode_text(tokenizer(["pleural effusion", "no effusion"])).numpy()
    np.testing.assert_allclose(build_text_tower(cfg, 48).encode(["pleural effusion", "no effusion"]), expected,
                               rtol=1e-5, atol=1e-6)
    image_tower = build_backbone(cfg, 48).model.state_dict()  # open_clip's ViT inside radbench's adapter
    visual = model.visual.state_dict()
    assert {key.removeprefix("visual.") for key in image_tower} == set(visual)
    for key, value in image_tower.items():
        torch.testing.assert_close(value, visual[key.removeprefix("visual.")])

"""Zero-shot classification with a vision-language backbone: class prompts through the text tower, compared with
the cached image embeddings (`embed`); nothing is trained and no image is read again.

A class's text embedding under one template is the mean of the normalised embeddings of its phrases in that
template, normalised; the ensemble's is the mean of the normalised embeddings of every phrase in every template,
normalised (CLIP's prompt ensembling, over phrases too). Single-label: softmax over the classes of the model's own logit scale x cosine.
Multi-label, `multilabel: pair` (CheXzero): per finding, softmax over its positive and negated prompt ("no
effusion"); `sigmoid`: the model's sigmoid with its learned bias (SigLIP-style models). Nothing is chosen on test:
with `choose_template: true` the single template scoring best on val is used, otherwise the ensemble; each
template's own test metric is kept in the details for the report's prompt-sensitivity table."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import field_validator

from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    finish,
    pick_best,
)
from radbench.protocols.prompts import NEGATION, TEMPLATES, phrases_for, templates_of

ENSEMBLE = "ensemble"


class ZeroShotConfig(ProtocolConfigBase):
    prompts: dict[str, list[str]] | None = None  # class -> phrases (replaces the built-in phrases of that class)
    templates: str | list[str] = "cxr"  # a built-in set (cxr, generic), or templates with one "{}"
    negation: str = NEGATION  # multi-label `pair`: the negated phrase
    multilabel: Literal["pair", "sigmoid"] = "pair"
    choose_template: bool = False  # pick one template on val (default: ensemble every template)

    @field_validator("prompts")
    @classmethod
    def _non_empty(cls, value):
        for name, phrases in (value or {}).items():
            if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
                raise ValueError(f"prompts for {name!r}: give at least one non-empty phrase")
        return value

    @field_validator("templates", mode="before")
    @classmethod
    def _known_set(cls, value):
        if isinstance(value, str) and value not in TEMPLATES:
            from radbench.errors import did_you_mean

            raise ValueError(f"{value!r} is not a built-in set{did_you_mean(value, TEMPLATES)}: give "
                             f"{' or '.join(TEMPLATES)}, or a list of templates with one {{}} each")
        if not isinstance(value, (str, list)):
            raise ValueError("give cxr, generic, or a list of templates with one {} each")
        return value

    @field_validator("templates")
    @classmethod
    def _placeholders(cls, value):
        for template in templates_of(value):
            if template.count("{}") != 1:
                raise ValueError(f"template {template!r} needs exactly one {{}} where the phrase goes")
        return value

    def feature_types(self, default: list[str]) -> list[str]:
        return ["embed"]  # the image embedding in the text tower's space


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(text, phrases: list[list[str]], templates: list[str]) -> dict[str, np.ndarray]:
    """{template: (C, D), ENSEMBLE: (C, D)} normalised class embeddings: under one template the mean of the
    normalised embeddings of the class's phrases in it; the ensemble the mean over every phrase in every template
    (every template has the same phrases, so the mean of the templates' unnormalised means); each normalised. Every
    prompt goes through the text encoder in one call (batched there), not one call per class."""
    prompts = list(dict.fromkeys(template.format(p) for template in templates for options in phrases for p in options))
    embedded = dict(zip(prompts, _unit(text.embed(prompts))))
    means = np.stack([np.stack([np.mean([embedded[template.format(p)] for p in options], axis=0)
                                for options in phrases]) for template in templates])  # (T, C, D)
    return {**{template: _unit(means[t]) for t, template in enumerate(templates)}, ENSEMBLE: _unit(means.mean(0))}


def scores(images: np.ndarray, positive: np.ndarray, negative: np.ndarray | None, text, cfg: ZeroShotConfig,
           single_label: bool) -> np.ndarray:
    """(N, C) probabilities from normalised image embeddings and (C, D) class embeddings."""
    logits = text.logit_scale * images @ positive.T
    if single_label:
        logits -= logits.max(1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(1, keepdims=True)
    if cfg.multilabel == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(logits + text.logit_bias)))
    against = text.logit_scale * images @ negative.T
    return 1.0 / (1.0 + np.exp(against - logits))  # softmax over (positive, negated) = sigmoid of the difference


def run_zero_shot(cfg: ZeroShotConfig, inputs: ProtocolInput) -> ProtocolResult:
    text, single = inputs.text, inputs.task.single_label
    if not single and cfg.multilabel == "sigmoid" and text.logit_bias is None:
        raise ValueError("multilabel: sigmoid needs a model with a learned logit bias (SigLIP); use pair")
    templates = templates_of(cfg.templates)
    phrases = [phrases_for(name, cfg.prompts) for name in inputs.class_names]
    positive = class_embeddings(text, phrases, templates)
    negative = None if single else class_embeddings(
        text, [[cfg.negation.format(p) for p in options] for options in phrases], templates)
    sets = {name: (positive[name], None if negative is None else negative[name]) for name in positive}

    def score(split: str, name: str) -> np.ndarray:
        images = _unit(inputs.features.get("embed", split).astype(np.float64))
        return scores(images, *sets[name], text, cfg, single)

    names = [ENSEMBLE, *templates] if cfg.choose_template else [ENSEMBLE]
    candidates = [{"params": {"templates": name}, "val": inputs.metrics(inputs.targets["val"], score("val", name))[0]
                   [inputs.selection_metric]} for name in names]
    chosen = pick_best([c["val"] for c in candidates]) if cfg.choose_template else 0
    name = names[chosen]
    per_template = {t: inputs.metrics(inputs.targets["test"], score("test", t))[0].get(inputs.selection_metric)
                    for t in sets}  # shown, never chosen on
    result = finish(inputs, candidates, chosen, score("val", name), score("test", name),
                    {"templates_test": per_template, "templates": templates, "logit_scale": text.logit_scale,
                     "phrases": dict(zip(inputs.class_names, phrases))})
    result.costs["trainable_params"] = 0.0
    result.predict = lambda split: score(split, name)
    return result


def check_zero_shot(study, datasets: dict) -> None:
    """Before any model is built: every backbone a zero_shot entry runs on has a text tower, every prompt names a
    class of some dataset, and every class of every dataset it runs on has phrases."""
    from radbench.backbones.text import check_text_towers, has_logit_bias
    from radbench.errors import ConfigError, did_you_mean

    check_text_towers(study)
    for i, entry in enumerate(study.protocols):
        if entry.type != "zero_shot":
            continue
        where = f"protocols[{i}].zero_shot"
        for backbone in study.backbones:
            multilabel = any(getattr(d, "task", None) is not None and not d.task.single_label
                             for name, d in datasets.items() if entry.runs_on_dataset(name))
            if entry.config.multilabel == "sigmoid" and multilabel and entry.runs_on(backbone) and \
                    has_logit_bias(backbone) is False:
                raise ConfigError(f"{where}.multilabel: sigmoid needs a model with a learned logit bias (SigLIP-"
                                  f"style); {backbone.display_name!r} has none — use multilabel: pair")
        classes = {name for d in datasets.values() if hasattr(d, "task") for name in d.class_names}
        for name in entry.config.prompts or {}:
            if name not in classes:
                raise ConfigError(f"{where}.prompts: {name!r} is not a class of any dataset of this study"
                                  f"{did_you_mean(name, classes)}; the classes: {', '.join(sorted(classes))}")
        for cfg in study.datasets:
            dataset = datasets.get(cfg.name)
            if dataset is None or not hasattr(dataset, "task") or getattr(cfg, "external_only", False) \
                    or not entry.runs_on_dataset(cfg.name):
                continue
            missing = [name for name in dataset.class_names if phrases_for(name, entry.config.prompts) is None]
            if missing:
                raise ConfigError(f"{where}: no prompt for class {missing[0]!r} of dataset {dataset.name!r} (no "
                                  f"built-in phrase either); add `prompts: {{{missing[0]}: [...]}}`")


PROTOCOLS.add("zero_shot", ProtocolSpec(
    "zero_shot", ZeroShotConfig, run_zero_shot,
    "vision-language zero-shot: class prompts through the text tower vs cached image embeddings",
    inputs="features+text", seed_free=lambda cfg: True))  # fixed prompts against fixed embeddings: nothing drawn

__all__ = ["TEMPLATES", "ZeroShotConfig", "check_zero_shot"]

"""Built-in prompts for zero-shot classification: phrases per class (chest X-ray findings as radiology reports word
them, MedMNIST classes) and template sets. A study's `prompts:` replaces the phrases of the classes it names."""

from __future__ import annotations

import re

TEMPLATES = {
    "cxr": ["a chest x-ray showing {}.", "chest radiograph with {}.", "findings consistent with {}.", "{}."],
    "generic": ["a medical image showing {}.", "an image of {}.", "a radiology image with {}.", "{}."],
}
NEGATION = "no {}"  # CheXzero's negative prompt for a finding ("no pleural effusion")

# finding (normalised name) -> phrases; names are compared lower-case, underscores and spaces alike
PHRASES = {
    "atelectasis": ["atelectasis", "collapsed lung segment"],
    "cardiomegaly": ["cardiomegaly", "enlarged heart"],
    "consolidation": ["consolidation", "lung consolidation"],
    "edema": ["pulmonary edema", "edema"],
    "effusion": ["pleural effusion", "fluid in the pleural space"],
    "pleural effusion": ["pleural effusion", "fluid in the pleural space"],
    "emphysema": ["emphysema", "hyperinflated lungs"],
    "fibrosis": ["pulmonary fibrosis", "fibrosis"],
    "hernia": ["hiatal hernia", "hernia"],
    "infiltration": ["infiltration", "pulmonary infiltrate"],
    "mass": ["lung mass", "mass"],
    "nodule": ["lung nodule", "nodule"],
    "pleural thickening": ["pleural thickening"],
    "pleural": ["pleural thickening", "pleural abnormality"],  # ChestMNIST's name for NIH's Pleural_Thickening
    "pneumonia": ["pneumonia", "infectious lung opacity"],
    "pneumothorax": ["pneumothorax", "collapsed lung with air in the pleural space"],
    "enlarged cardiomediastinum": ["enlarged cardiomediastinum", "widened mediastinum"],
    "lung opacity": ["lung opacity", "airspace opacity"],
    "lung lesion": ["lung lesion"],
    "pleural other": ["pleural abnormality"],
    "fracture": ["rib fracture", "fracture"],
    "support devices": ["support devices", "tubes and lines"],
    "no finding": ["no acute cardiopulmonary abnormality", "normal chest"],
    "normal": ["a normal study", "no abnormality"],
    "malignant": ["malignant tumor", "cancer"],
    "benign": ["benign lesion"],
}


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def phrases_for(class_name: str, given: dict[str, list[str]] | None) -> list[str] | None:
    """The study's phrases for the class, else the built-in ones, else None."""
    if given and class_name in given:
        return list(given[class_name])
    return PHRASES.get(normalise(class_name))


def templates_of(value: str | list[str]) -> list[str]:
    return TEMPLATES[value] if isinstance(value, str) else list(value)

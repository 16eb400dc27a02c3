"""The run as one story (radbench/runner.py over radbench/study/): a new kind of protocol input is declared and
prepared by name, without touching the run loop; an input nothing prepares is one line."""

from __future__ import annotations

import numpy as np
import pytest

from radbench.protocols import PROTOCOLS
from radbench.protocols.base import ProtocolConfigBase, ProtocolResult, ProtocolSpec
from radbench.study import prepare
from tests.conftest import tiny_study, write_study


class ToyConfig(ProtocolConfigBase):
    pass


SEEN: dict = {}


def run_toy(cfg: ToyConfig, inputs) -> ProtocolResult:
    """Scores test images by their mean cached CLS feature; says what it was given."""
    SEEN["feature_types"] = inputs.feature_types
    SEEN["has_backbone"] = inputs.images is not None and inputs.images.backbone is not None
    test = inputs.features.get(inputs.feature_types[0], "test").mean(1)
    positive = 1 / (1 + np.exp(-(test - test.mean()) / (test.std() + 1e-9)))
    scores = np.stack([1 - positive, positive], 1)
    metrics, _ = inputs.metrics(inputs.targets["test"], scores)
    return ProtocolResult({"feature": inputs.feature_types[0]}, [{"params": {}, "val": np.nan}], {}, metrics, scores)


def features_and_images(unit, job):
    """The toy's input kind: the cached features and the image context together."""
    with_features = prepare.feature_inputs(unit, job)
    with_images = prepare.image_inputs(unit, job)
    with_features.inputs.images = with_images.inputs.images
    return with_features


@pytest.fixture
def toy_protocol():
    PROTOCOLS.replace("toy_both", ProtocolSpec("toy_both", ToyConfig, run_toy, "features and images together",
                                               inputs="features+images"))
    prepare.INPUTS["features+images"] = features_and_images
    yield
    PROTOCOLS._items.pop("toy_both")
    prepare.INPUTS.pop("features+images")


def test_a_protocol_taking_features_and_images_runs_by_declaring_them(tmp_path, pneumonia_npz, cli, toy_protocol):
    import radbench

    datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}]
    study = write_study(tmp_path, tiny_study(tmp_path, datasets, [{"toy_both": {}}, {"knn": {"k": [3]}}]))
    result = cli("run", study)
    assert result.exit_code == 0, result.stderr
    assert SEEN == {"feature_types": ["cls"], "has_backbone": True}
    stored = radbench.load(tmp_path / "out").jobs.set_index("protocol")
    assert stored.feature_cache["toy_both"] == stored.feature_cache["knn"]  # one extraction serves both


def test_an_input_kind_nothing_prepares_is_one_line(tmp_path, pneumonia_npz, cli):
    PROTOCOLS.replace("toy_unprepared", ProtocolSpec("toy_unprepared", ToyConfig, run_toy, "asks for the unknown",
                                                     inputs="features+sound"))
    try:
        datasets = [{"name": "p", "adapter": "medmnist", "path": str(pneumonia_npz), "limit": 30}]
        result = cli("run", write_study(tmp_path, tiny_study(tmp_path, datasets, [{"toy_unprepared": {}}])))
    finally:
        PROTOCOLS._items.pop("toy_unprepared")
    assert result.exit_code == 1
    assert "takes inputs 'features+sound', which nothing prepares; known: features, features+text, images, segmentation" in \
        " ".join(result.stderr.split())

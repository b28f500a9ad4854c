"""The published figures of the reference networks, at 224x224."""
from __future__ import annotations

import hashlib

import pytest

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.sample_models import SAMPLES, build_sample

FIGURES = {
    # name: (params, Conv+Gemm MACs or None)
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "alexnet": (61_100_840, 714_188_480),
    "resnet18": (11_689_512, None),
    "mobilenet": (4_231_976, None),
    "lenet5": (61_706, None),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_published_figures(sample_path, name):
    result = analyze(load_graph(sample_path(name)))
    params, macs = FIGURES[name]
    assert result.totals.params == params
    if macs is not None:
        assert sum(c.macs for c in result.nodes if c.op_type in ("Conv", "Gemm")) == macs
    assert not result.unknown_ops


def test_builds_are_deterministic():
    for name in ("lenet5", "resnet18"):
        first = hashlib.sha256(build_sample(name, 32).SerializeToString()).hexdigest()
        again = hashlib.sha256(build_sample(name, 32).SerializeToString()).hexdigest()
        other_seed = hashlib.sha256(build_sample(name, 32, seed=1).SerializeToString()).hexdigest()
        assert first == again != other_seed


def test_input_size_changes_the_classifier(sample_path):
    small = analyze(load_graph(sample_path("vgg16", 32)))
    assert small.graph.shape("flatten1_out") == (1, 512)  # 32 / 2**5 = 1
    assert small.totals.params == 138_357_544 - (25088 - 512) * 4096


def test_catalog_and_limits():
    assert set(SAMPLES) == set(FIGURES)
    with pytest.raises(SplitnnError, match="unknown sample"):
        build_sample("resnet50")
    with pytest.raises(SplitnnError, match="too small"):
        build_sample("vgg16", 16)

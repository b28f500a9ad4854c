"""The fit is checked on timings made from a known profile, so the figures it must recover are known."""
from __future__ import annotations

import tomllib

import pytest

from splitnn.cost_models.catalog import load_device
from splitnn.cost_models.fitting import fit_profile, fit_report_lines
from splitnn.cost_models.latency import node_seconds
from splitnn.cost_models.node_timing import KernelGroup, NodeTimings
from splitnn.cost_models.profiles import device_from_dict, device_to_toml
from splitnn.cost_models.registry import node_costs
from splitnn.onnxsplit.model.loading import load_graph


def _synthetic(graph, truth, pair: bool = False) -> NodeTimings:
    """Timings as `truth` predicts them; with pair=True, neighbouring nodes share one kernel (a fusion)."""
    costs = node_costs(graph)
    placed = [n.index for n in graph.nodes if not n.is_constant]
    chunks = [placed[i:i + 2] for i in range(0, len(placed), 2)] if pair else [[i] for i in placed]
    groups = tuple(
        KernelGroup((graph.nodes[c[0]].name,), tuple(c), sum(node_seconds(graph.nodes[i], costs[i], graph, truth) for i in c))
        for c in chunks
    )
    return NodeTimings(str(graph.path), "basic", None, 5, 1, groups, (), sum(g.seconds for g in groups))


@pytest.mark.parametrize("pair", [False, True])
def test_fit_recovers_the_profile_that_made_the_timings(sample_path, pair):
    truth = load_device("rockpro64")
    base = load_device("cloud-cpu")  # a start far from the truth
    graphs = [load_graph(sample_path("mobilenet", 96)), load_graph(sample_path("alexnet", 96))]
    fit = fit_profile([(g, _synthetic(g, truth, pair)) for g in graphs], base, "board")
    got = fit.profile
    classes = {c.name: c for c in fit.classes}
    # Conv rates and the bandwidth (AlexNet's fully connected layers are memory bound) come back closely.
    for name in ("dense_conv", "depthwise_conv"):
        assert classes[name].fitted
        assert got.macs_per_s[name] == pytest.approx(truth.macs_per_s[name], rel=0.05)
    assert classes["memory"].fitted
    assert got.memory_bytes_per_s == pytest.approx(truth.memory_bytes_per_s, rel=0.05)
    for model in fit.models:
        assert model.predicted_s == pytest.approx(model.measured_s, rel=0.02)
    assert got.name == "board" and got.ram_bytes == base.ram_bytes


def test_fit_tells_the_weights_bandwidth_from_the_activations(sample_path):
    """Weights read from DRAM, activations from cache: AlexNet's fully connected layers pin the first, the rest
    of the traffic the second."""
    from dataclasses import replace

    truth = replace(load_device("rockpro64"), weight_bytes_per_s=0.9e9)
    graphs = [load_graph(sample_path("mobilenet", 96)), load_graph(sample_path("alexnet", 96))]
    fit = fit_profile([(g, _synthetic(g, truth)) for g in graphs], load_device("cloud-cpu"), "board")
    classes = {c.name: c for c in fit.classes}
    assert classes["weights"].fitted and classes["weights"].groups >= 3  # AlexNet's three Gemms
    assert fit.profile.weight_bandwidth == pytest.approx(0.9e9, rel=0.05)
    assert fit.profile.memory_bytes_per_s == pytest.approx(truth.memory_bytes_per_s, rel=0.05)


def test_a_class_the_models_lack_is_scaled_from_the_base(sample_path):
    truth = load_device("rockpro64")
    graph = load_graph(sample_path("lenet5"))  # no depthwise convolution
    fit = fit_profile([(graph, _synthetic(graph, truth))], load_device("raspberry-pi-4"), "board")
    classes = {c.name: c for c in fit.classes}
    assert not classes["depthwise_conv"].fitted and classes["depthwise_conv"].groups == 0
    assert fit.profile.macs_per_s["depthwise_conv"] > 0


def test_fitted_profile_round_trips_through_toml(sample_path):
    graph = load_graph(sample_path("lenet5"))
    measurements = [(graph, _synthetic(graph, load_device("rockpro64")))]
    fit = fit_profile(measurements, load_device("raspberry-pi-4"), "board")
    text = device_to_toml(fit.profile, fit_report_lines(fit, measurements))
    assert text.startswith("# Fitted by `splitnn profile`")
    again = device_from_dict(tomllib.loads(text), "file")
    for name, rate in fit.profile.macs_per_s.items():
        assert again.macs_per_s[name] == pytest.approx(rate, rel=1e-3)
    assert again.per_node_overhead_s == pytest.approx(fit.profile.per_node_overhead_s, rel=1e-3)

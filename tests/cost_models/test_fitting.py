"""The fit is checked on timings made from a known profile, so the figures it must recover are known."""
from __future__ import annotations

import math
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
    fit = fit_profile([(g, _synthetic(g, truth, pair)) for g in graphs], base, "board", prior=0.0)  # the data alone
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
    fit = fit_profile([(g, _synthetic(g, truth)) for g in graphs], load_device("cloud-cpu"), "board", prior=0.0)
    classes = {c.name: c for c in fit.classes}
    assert classes["weights"].fitted and classes["weights"].groups >= 3  # AlexNet's three Gemms
    assert fit.profile.weight_bandwidth == pytest.approx(0.9e9, rel=0.05)
    assert fit.profile.memory_bytes_per_s == pytest.approx(truth.memory_bytes_per_s, rel=0.05)


def test_a_narrow_dense_convolution_runs_below_the_full_rate(sample_path):
    """Measured at the device part's level on an x86 host: 16 output channels at 0.49 of the full rate, 32 at 0.66."""
    from dataclasses import replace

    from splitnn.cost_models.latency import NodeWork, node_work, rate_efficiency

    board = replace(load_device("rockpro64"), dense_conv_full_channels=64)

    def dense(channels: int) -> NodeWork:
        return NodeWork("dense_conv", 1, 1, channels=channels)

    assert rate_efficiency(dense(16), board) == pytest.approx(0.5)
    assert rate_efficiency(dense(64), board) == rate_efficiency(dense(512), board) == 1.0
    assert rate_efficiency(dense(16), load_device("rockpro64")) == 1.0  # a profile without the figure: no loss
    graph = load_graph(sample_path("mobilenet", 96))
    costs = node_costs(graph)
    works = [node_work(n, costs[n.index], graph) for n in graph.nodes]
    dense = [w for w in works if w.op_class == "dense_conv"]
    assert dense and all(w.channels == graph.shape(n.outputs[0])[1] for n, w in zip(graph.nodes, works) if w.op_class == "dense_conv")
    assert all(w.channels == 0 for w in works if w.op_class != "dense_conv")
    narrow = next(n for n, w in zip(graph.nodes, works) if w.op_class == "dense_conv" and w.channels < 64)
    compute_bound = replace(board, memory_bytes_per_s=1e15, per_node_overhead_s=0.0)  # the rate alone decides
    slow = node_seconds(narrow, costs[narrow.index], graph, compute_bound)
    full = node_seconds(narrow, costs[narrow.index], graph, replace(compute_bound, dense_conv_full_channels=None))
    channels = graph.shape(narrow.outputs[0])[1]
    assert slow / full == pytest.approx((64 / channels) ** 0.5)


def test_a_depthwise_convolution_loses_rate_on_narrow_and_strided_rows():
    """On the PP-OCR detector (a real export), timed at the device part's level on this x86 host: 3x3 rows of
    160 columns at 18.8 GMAC/s, 20 columns (5x5) at 9.3, rows stepped by 2 at 6 to 7. The roofline follows the
    row: width / (width + overhead), times the strided efficiency."""
    from dataclasses import replace

    from splitnn.cost_models.latency import node_work, rate_efficiency
    from tests.helpers import DET_MODEL, rapidocr_model

    graph = load_graph(rapidocr_model(DET_MODEL), {"x": (1, 3, 320, 320)})
    costs = node_costs(graph)
    works = [(n, node_work(n, costs[n.index], graph)) for n in graph.nodes if not n.is_constant]
    depthwise = [(n, w) for n, w in works if w.op_class == "depthwise_conv"]
    assert len(depthwise) >= 10
    assert all(w.row == graph.shape(n.outputs[0])[3] and w.row_stride == n.attrs["strides"][1] for n, w in depthwise)
    assert {w.row_stride for _, w in depthwise} == {1, 2}
    assert all(w.row == 0 for _, w in works if w.op_class != "depthwise_conv")
    board = replace(load_device("rockpro64"), depthwise_row_overhead=20.0, depthwise_strided_efficiency=0.5)
    wide = next(w for _, w in depthwise if w.row == 160 and w.row_stride == 1)
    narrow = next(w for _, w in depthwise if w.row == 10 and w.row_stride == 1)
    strided = next(w for _, w in depthwise if w.row == 80 and w.row_stride == 2)
    assert rate_efficiency(wide, board) == pytest.approx(160 / 180)
    assert rate_efficiency(narrow, board) == pytest.approx(10 / 30)
    assert rate_efficiency(strided, board) == pytest.approx(80 / 100 * 0.5)
    assert rate_efficiency(wide, load_device("rockpro64")) == 1.0  # a profile without the figures: no loss
    # The fit finds the full rate behind the rows, and keeps the base's row figures.
    fit = fit_profile([(graph, _synthetic(graph, board))], replace(load_device("cloud-cpu"), depthwise_row_overhead=20.0,
                                                                  depthwise_strided_efficiency=0.5), "board", prior=0.0)
    assert fit.profile.depthwise_row_overhead == 20.0 and fit.profile.depthwise_strided_efficiency == 0.5
    assert fit.profile.macs_per_s["depthwise_conv"] == pytest.approx(board.macs_per_s["depthwise_conv"], rel=0.05)


def test_a_dense_convolution_with_few_pixels_loses_rate_and_the_fit_finds_how_much(sample_path):
    """ResNet-18's 3x3 layers ran at 0.72 of the full rate with 49 output pixels, 0.8 with 196 (on this host, in the
    model): pixels / (pixels + overhead). The overhead is the fit's eighth figure; ResNet-18 at 96x96 has layers
    from 9 to 2304 pixels, which pin it down."""
    from dataclasses import replace

    from splitnn.cost_models.latency import node_work, pixel_efficiency, rate_efficiency

    assert pixel_efficiency(49, 30.0) == pytest.approx(49 / 79)
    assert pixel_efficiency(49, None) == pixel_efficiency(0, 30.0) == 1.0
    graph = load_graph(sample_path("resnet18", 96))
    costs = node_costs(graph)
    works = [node_work(n, costs[n.index], graph) for n in graph.nodes if not n.is_constant]
    dense = [w for w in works if w.op_class == "dense_conv"]
    assert {w.pixels for w in dense} >= {9, 2304} and all(w.pixels == 0 for w in works if w.op_class != "dense_conv")
    truth = replace(load_device("rockpro64"), dense_conv_pixel_overhead=30.0)
    smallest = min(dense, key=lambda w: w.pixels)
    assert rate_efficiency(smallest, truth) == pytest.approx(9 / 39)
    fit = fit_profile([(graph, _synthetic(graph, truth))], replace(load_device("cloud-cpu"), dense_conv_pixel_overhead=5.0),
                      "board", prior=0.0)
    assert fit.pixel_overhead_fitted
    assert fit.profile.dense_conv_pixel_overhead == pytest.approx(30.0, rel=0.1)
    assert fit.profile.macs_per_s["dense_conv"] == pytest.approx(truth.macs_per_s["dense_conv"], rel=0.05)
    # A base without the figure: no pixel loss, and none fitted.
    plain = fit_profile([(graph, _synthetic(graph, truth))], load_device("cloud-cpu"), "board", prior=0.0)
    assert plain.profile.dense_conv_pixel_overhead is None and not plain.pixel_overhead_fitted


def test_transcendental_operators_and_a_softmax_over_another_axis_have_classes_of_their_own():
    """YOLOv8n (a PyTorch export): 58 SiLU Sigmoids, and the box distribution's Softmax over axis 1 of [1, 16, 4, 2100],
    which onnxruntime ran 28x slower than over the last axis. A profile without these classes rates them as before."""
    from splitnn.cost_models.op_classes import ELEMENTWISE, STRIDED_SOFTMAX, TRANSCENDENTAL, op_class
    from tests.helpers import NUDENET, packaged_model

    package, relative, shapes = NUDENET
    graph = load_graph(packaged_model(package, relative), shapes)
    classes = {n.op_type: set() for n in graph.nodes}
    for node in graph.nodes:
        classes[node.op_type].add(op_class(node, graph))
    assert classes["Sigmoid"] == {TRANSCENDENTAL} and classes["Mul"] == {ELEMENTWISE}
    assert classes["Softmax"] == {STRIDED_SOFTMAX}
    board = load_device("rockpro64")  # its file predates the classes: they take the elementwise rate
    assert board.macs_per_s[TRANSCENDENTAL] == board.macs_per_s[STRIDED_SOFTMAX] == board.macs_per_s[ELEMENTWISE]
    from dataclasses import replace

    rates = {k: v for k, v in board.macs_per_s.items() if k != STRIDED_SOFTMAX}
    slower = replace(board, macs_per_s={**rates, TRANSCENDENTAL: board.macs_per_s[ELEMENTWISE] / 3})
    assert slower.macs_per_s[STRIDED_SOFTMAX] == slower.macs_per_s[TRANSCENDENTAL]  # a missing class: its fallback's rate
    text = device_to_toml(slower)
    assert "transcendental_gmac_per_s" in text and "strided_softmax_gmac_per_s" in text
    assert device_from_dict(tomllib.loads(text), "file").macs_per_s[TRANSCENDENTAL] == pytest.approx(
        slower.macs_per_s[TRANSCENDENTAL], rel=1e-3)
    sigmoid = next(n for n in graph.nodes if n.op_type == "Sigmoid")
    costs = node_costs(graph)
    compute_bound = replace(slower, memory_bytes_per_s=1e15, weight_bytes_per_s=1e15, per_node_overhead_s=0.0)
    assert node_seconds(sigmoid, costs[sigmoid.index], graph, compute_bound) == pytest.approx(
        3 * node_seconds(sigmoid, costs[sigmoid.index], graph, replace(compute_bound, macs_per_s=board.macs_per_s)))


def test_the_fit_finds_the_full_rate_behind_narrow_convolutions(sample_path):
    """The width comes from the base profile; the fit recovers the full rate, not the narrow layers' average."""
    from dataclasses import replace

    truth = replace(load_device("rockpro64"), dense_conv_full_channels=128)
    base = replace(load_device("cloud-cpu"), dense_conv_full_channels=128)
    graphs = [load_graph(sample_path("mobilenet", 96)), load_graph(sample_path("alexnet", 96))]
    fit = fit_profile([(g, _synthetic(g, truth)) for g in graphs], base, "board", prior=0.0)
    assert fit.profile.dense_conv_full_channels == 128
    assert fit.profile.macs_per_s["dense_conv"] == pytest.approx(truth.macs_per_s["dense_conv"], rel=0.05)


def test_a_class_the_models_lack_keeps_the_base_value(sample_path):
    truth = load_device("rockpro64")
    base = load_device("raspberry-pi-4")
    graph = load_graph(sample_path("lenet5"))  # no depthwise convolution
    fit = fit_profile([(graph, _synthetic(graph, truth))], base, "board")
    classes = {c.name: c for c in fit.classes}
    assert not classes["depthwise_conv"].fitted and classes["depthwise_conv"].groups == 0
    # The base's value, times the one common factor that makes the summed prediction the summed measurement.
    factor = fit.profile.macs_per_s["depthwise_conv"] / base.macs_per_s["depthwise_conv"]
    assert factor == pytest.approx(fit.profile.memory_bytes_per_s / base.memory_bytes_per_s, rel=0.5)
    assert sum(m.predicted_s for m in fit.models) == pytest.approx(sum(m.measured_s for m in fit.models), rel=0.01)


def test_the_base_holds_a_figure_the_models_barely_touch(sample_path):
    """LeNet-5's weights are 0.25 MB: how fast they stream hardly shows in its timings. The data alone moves the
    weight bandwidth to wherever it fits best; the base as a prior keeps it near the base's."""
    from dataclasses import replace

    base = load_device("rockpro64")
    truth = replace(base, weight_bytes_per_s=base.weight_bandwidth / 10)
    graph = load_graph(sample_path("lenet5"))
    timings = [(graph, _synthetic(graph, truth))]
    alone = fit_profile(timings, base, "board", prior=0.0).profile.weight_bandwidth / base.weight_bandwidth
    held = fit_profile(timings, base, "board").profile.weight_bandwidth / base.weight_bandwidth
    assert abs(math.log(held)) < abs(math.log(alone))


def test_what_the_profiler_adds_is_taken_off_the_kernels(sample_path):
    """Kernels timed under the profiler add up to more (or less) than a plain run: the fit predicts the plain run."""
    from dataclasses import replace

    from splitnn.cost_models.fitting import profiler_cost_per_kernel

    graph = load_graph(sample_path("lenet5"))
    profiled = _synthetic(graph, load_device("rockpro64"))
    timings = replace(profiled, plain_seconds=0.8 * profiled.kernel_seconds)
    kernels = sum(len(g.kernels) for g in timings.groups)
    assert profiler_cost_per_kernel(timings) == pytest.approx(0.2 * profiled.kernel_seconds / kernels)
    assert profiler_cost_per_kernel(profiled) == 0.0  # no plain run timed: nothing taken off
    fit = fit_profile([(graph, timings)], load_device("rockpro64"), "board")
    assert fit.models[0].predicted_s == pytest.approx(timings.plain_seconds, rel=0.02)
    # A plain run longer than the kernels: the time between them is carried by the kernels, and predicted.
    slow = replace(profiled, plain_seconds=1.25 * profiled.kernel_seconds)
    assert profiler_cost_per_kernel(slow) == pytest.approx(-0.25 * profiled.kernel_seconds / kernels)
    fit = fit_profile([(graph, slow)], load_device("rockpro64"), "board")
    assert fit.models[0].predicted_s == pytest.approx(slow.plain_seconds, rel=0.02)


def test_fitted_profile_round_trips_through_toml(sample_path):
    graph = load_graph(sample_path("lenet5"))
    measurements = [(graph, _synthetic(graph, load_device("rockpro64")))]
    from dataclasses import replace

    fit = fit_profile(measurements, replace(load_device("raspberry-pi-4"), dense_conv_full_channels=48.0), "board")
    text = device_to_toml(fit.profile, fit_report_lines(fit, measurements))
    assert text.startswith("# Fitted by `splitnn profile`")
    again = device_from_dict(tomllib.loads(text), "file")
    for name, rate in fit.profile.macs_per_s.items():
        assert again.macs_per_s[name] == pytest.approx(rate, rel=1e-3)
    assert again.per_node_overhead_s == pytest.approx(fit.profile.per_node_overhead_s, rel=1e-3)
    assert again.dense_conv_full_channels == 48.0


def test_a_figure_the_fit_moved_is_never_reported_as_the_bases(sample_path):
    """issue 30, item 8: `profile` printed `memory 2.01 GB/s no (base)` where the base has 65.5. A figure the data
    moves without pinning it down (LeNet-5's weights stream too briefly to fix their bandwidth, yet they pull it)
    is marked `pulled`, with the base's value beside it; one marked neither fitted nor pulled is the base's, times
    the common factor."""
    from dataclasses import replace

    base = load_device("rockpro64")
    truth = replace(base, weight_bytes_per_s=base.weight_bandwidth / 10)
    graph = load_graph(sample_path("lenet5"))
    fit = fit_profile([(graph, _synthetic(graph, truth))], base, "board")
    classes = {c.name: c for c in fit.classes}
    factor = fit.profile.macs_per_s["depthwise_conv"] / base.macs_per_s["depthwise_conv"]  # a class LeNet-5 lacks
    values = {**fit.profile.macs_per_s, "memory": fit.profile.memory_bytes_per_s,
              "weights": fit.profile.weight_bandwidth}
    bases = {**base.macs_per_s, "memory": base.memory_bytes_per_s, "weights": base.weight_bandwidth}
    for c in fit.classes:
        assert c.base_value == pytest.approx(bases[c.name])
        if not c.fitted and not c.pulled:
            assert values[c.name] / c.base_value == pytest.approx(factor, rel=0.25), c
    weights = classes["weights"]
    assert abs(math.log(values["weights"] / bases["weights"] / factor)) > math.log(1.25)  # the data moved it
    assert weights.fitted or weights.pulled
    if weights.pulled:
        assert any("moved by these models from the base profile's" in line
                   for line in fit_report_lines(fit, [(graph, _synthetic(graph, truth))]))

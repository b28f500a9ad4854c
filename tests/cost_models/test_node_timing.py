from __future__ import annotations

import pytest

from splitnn.cost_models.node_timing import group_kernels, kernel_medians, time_nodes
from splitnn.onnxsplit.model.loading import load_graph
from tests.helpers import CLS_MODEL, rapidocr_model


def _run(ts: int, dur: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _kernel(name: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur}


def test_kernel_medians_drop_warmup_and_sum_repeated_names():
    events = [_run(0, 100), _kernel("a", 10, 90)]  # warm-up, slow
    for start, (a, b) in zip((1000, 2000, 3000), ((10, 4), (30, 6), (20, 5))):
        events += [_run(start, 100), _kernel("a", start + 1, a), _kernel("b", start + 50, b), _kernel("b", start + 60, b)]
    events.append({"cat": "Node", "name": "a_fence_before", "ts": 1001, "dur": 0})
    medians, walls = kernel_medians(events, warmup=1)
    assert medians == pytest.approx({"a": 20e-6, "b": 10e-6})  # b: 2 x 5 us per run
    assert walls == pytest.approx([100e-6] * 3)
    with pytest.raises(ValueError, match="no more than the 4 warm-up runs"):
        kernel_medians(events, warmup=4)


def _covers_every_node_once(graph, groups, eliminated) -> None:
    placed = [i for g in groups for i in g.nodes] + list(eliminated)
    assert sorted(placed) == sorted(n.index for n in graph.nodes if n.op_type != "Constant")  # static nodes too
    assert all(g.nodes for g in groups)


@pytest.mark.parametrize("level", ["none", "basic", "extended", "all"])
def test_fused_kernels_map_back_to_every_node(sample_path, level):
    graph = load_graph(sample_path("resnet18", 64))
    timings = time_nodes(graph, runs=2, warmup=1, level=level)
    _covers_every_node_once(graph, timings.groups, timings.eliminated)
    assert not timings.eliminated
    assert all(g.seconds > 0 for g in timings.groups)
    by_node = {graph.nodes[i].name: g for g in timings.groups for i in g.nodes}
    if level == "none":
        assert len(timings.groups) == sum(1 for n in graph.nodes if not n.is_constant)
    if level in ("basic", "extended"):
        # BatchNormalization is folded into the convolution before it: one kernel, two nodes.
        assert by_node["conv1"] is by_node["bn1"] and by_node["conv1"].kernels == ("conv1",)
    if level == "extended":
        assert by_node["relu1"] is by_node["conv1"]  # Conv+Relu fusion
    if level == "all":
        # Layout conversion (NCHWc) renames the intermediate tensors: the whole conv trunk becomes one group.
        assert len(by_node["conv1"].nodes) > 50


def test_real_exported_model_folded_nodes_are_eliminated():
    graph = load_graph(rapidocr_model(CLS_MODEL), {"x": (1, 3, 48, 192)})
    timings = time_nodes(graph, runs=1, warmup=0)
    _covers_every_node_once(graph, timings.groups, timings.eliminated)
    # With the input shape fixed, the Shape -> Slice -> Concat chains are constant and folded away.
    assert {graph.nodes[i].op_type for i in timings.eliminated} <= {"Shape", "Slice", "Concat", "Cast", "Gather", "Unsqueeze"}
    assert timings.eliminated


def test_group_kernels_with_an_unknown_kernel_name(sample_path):
    """A kernel missing from the trace counts 0 s; grouping does not depend on the timings."""
    graph = load_graph(sample_path("lenet5"))
    groups, eliminated = group_kernels(graph, graph.model, {})  # the file itself as the "optimized" graph
    assert all(g.seconds == 0 for g in groups) and not eliminated
    assert [g.kernels for g in groups] == [(n.name,) for n in graph.nodes if not n.is_constant]

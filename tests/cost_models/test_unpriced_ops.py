"""Nodes priced at 0 s for an operator with no cost formula (issue 30, item 4): every plan carries them, typed, into
plan.json, and partition says so in one warning (the command lines' one warning line, which every command that
plans or predicts from costs gives: tests/cli/test_library_flows_cli.py)."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import splitnn
from splitnn.cost_models.catalog import load_device, load_link
from splitnn.cost_models.registry import UnpricedOps, unpriced_ops
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.plan_file import read_plan
from splitnn.onnxsplit.model.loading import load_graph
from tests.helpers import make_model, tensor, weight

BOARD, CLOUD = load_device("rockpro64"), load_device("cloud-cpu")


def _determinants(path):
    """x [2, 3, 3] @ w, then a determinant per matrix (no formula), times the determinant of a constant matrix (a
    static node: computed once from constants, no work per inference)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Det", ["h"], ["d"], name="mystery"),
             helper.make_node("Det", ["c"], ["dc"], name="folded"),
             helper.make_node("Mul", ["d", "dc"], ["y"], name="scale")]
    inits = [weight("w", (3, 3)), numpy_helper.from_array(np.eye(3, dtype=np.float32) * 2, "c")]
    onnx.save_model(make_model(nodes, [tensor("x", [2, 3, 3])], [tensor("y", [2])], inits), str(path))
    return path


@pytest.fixture(scope="module")
def determinants(tmp_path_factory):
    return _determinants(tmp_path_factory.mktemp("det") / "det.onnx")


def test_only_unknown_nodes_with_work_are_unpriced(determinants, sample_path):
    graph = load_graph(determinants)
    assert [n.is_constant for n in graph.nodes if n.op_type == "Det"] == [False, True]
    assert unpriced_ops(graph) == UnpricedOps({"Det": 1})  # the static one is done once, not per inference
    assert analyze(graph).unknown_ops == {"Det": ["mystery", "folded"]}  # analyze still lists both
    assert unpriced_ops(load_graph(sample_path("lenet5"))) is None


def test_a_vertical_plan_carries_its_unpriced_nodes_into_plan_json(determinants, tmp_path):
    from splitnn.onnxsplit.vertical.adaptive import plan_adaptive
    from splitnn.onnxsplit.vertical.export import write_split
    from splitnn.onnxsplit.vertical.planning import plan_split

    analysis = analyze(load_graph(determinants))
    for objective in ("latency", "throughput"):
        plan = plan_split(analysis, BOARD, CLOUD, load_link("4g"), objective)
        assert isinstance(plan.unpriced, UnpricedOps)
        assert plan.unpriced.counts == {"Det": 1} and plan.unpriced.nodes == 1
    assert plan_adaptive(plan, 1e6, 50e6).plan.unpriced == plan.unpriced
    document = write_split(analysis, plan, tmp_path / "split", ort_format=False)
    assert document.unpriced_ops == plan.unpriced
    assert read_plan(tmp_path / "split").unpriced_ops == UnpricedOps({"Det": 1})  # typed again when read back


def test_a_tile_plan_carries_its_unpriced_nodes(tmp_path):
    from splitnn.onnxsplit.tiles.planning import plan_tiles

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Shrink", ["f"], ["y"], name="shrink", lambd=0.5)]
    model = make_model(nodes, [tensor("x", [1, 3, 32, 32])], [tensor("y", [1, 8])],
                       [weight("w1", (8, 3, 3, 3)), weight("w2", (8, 8, 3, 3), 1)])
    onnx.save_model(model, str(tmp_path / "tiles.onnx"))
    plan = plan_tiles(analyze(load_graph(tmp_path / "tiles.onnx")), 2, BOARD)
    assert plan.unpriced == UnpricedOps({"Shrink": 1})


def test_partition_warns_once_and_the_plan_names_the_nodes(determinants, tmp_path):
    """The API's one warning (a UserWarning) for the nodes priced at 0 s; what the command line prints, and what
    run-bench says before it runs the plan: tests/cli/test_library_flows_cli.py."""
    with pytest.warns(UserWarning) as caught:
        plan = splitnn.partition(determinants, tmp_path / "split", link="4g", ort_format=False)
    notes = [str(w.message) for w in caught if str(w.message).startswith("splitnn:")]
    assert len(notes) == 1, notes
    assert "no cost formula for Det x1: priced at 0 s" in notes[0]
    assert "the prediction leaves out their work" in notes[0]
    assert plan.unpriced_ops == UnpricedOps({"Det": 1}) == read_plan(tmp_path / "split").unpriced_ops


def test_no_warning_for_a_model_every_node_of_which_is_priced(sample_path, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = splitnn.partition(sample_path("lenet5"), tmp_path / "split", link="4g", ort_format=False)
    assert [str(w.message) for w in caught if str(w.message).startswith("splitnn:")] == []
    assert plan.unpriced_ops is None


def test_a_typed_record_in_json():
    record = UnpricedOps({"DynamicQuantizeLSTM": 2, "Det": 1})
    assert UnpricedOps.from_dict(record.to_dict()) == record and record.op_types == ("DynamicQuantizeLSTM", "Det")
    assert record.to_dict() == {"counts": {"DynamicQuantizeLSTM": 2, "Det": 1}}

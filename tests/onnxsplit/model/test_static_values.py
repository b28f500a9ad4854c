"""Static values: tensors computed from initializers and constants alone are constants (issue 11, item 1)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from splitnn.onnxsplit.analysis.analyze import analyze
from tests.helpers import load_proto, make_model, max_chain_error, tensor, weight


def _exported_like():
    """What exporters write: a weight behind Identity and Cast, batch norm unfolded into Sub/Mul/Add with constant
    operands, and a Reshape whose shape is computed by Shape -> Gather -> Concat from the activation."""
    nodes = [
        helper.make_node("Identity", ["w_raw"], ["w"], name="weight_identity"),
        helper.make_node("Cast", ["w"], ["w_cast"], name="weight_cast", to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w_cast"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["var", "eps_scale"], ["scale"], name="bn_scale"),  # static arithmetic
        helper.make_node("Sub", ["c", "mean"], ["centred"], name="bn_sub"),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="bn_mul"),
        helper.make_node("Relu", ["scaled"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["r_shape"], name="shape"),
        helper.make_node("Gather", ["r_shape", "zero"], ["batch"], name="gather_batch", axis=0),
        helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], name="concat_shape", axis=0),
        helper.make_node("Reshape", ["r", "flat_shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "fc"], ["y"], name="fc"),
    ]
    inits = [weight("w_raw", [4, 3, 3, 3], 1), weight("mean", [1, 4, 1, 1], 2), weight("var", [1, 4, 1, 1], 3),
             numpy_helper.from_array(np.full([1, 4, 1, 1], 0.5, np.float32), "eps_scale"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one"), weight("fc", [4 * 8 * 8, 10], 4)]
    return make_model(nodes, [tensor("x", [1, 3, 8, 8])], [tensor("y", [1, 10])], inits)


def test_static_nodes_take_no_position_and_never_cross(tmp_path):
    model = _exported_like()
    graph = load_proto(model, tmp_path)
    static = {node.name for node in graph.nodes if node.is_static}
    assert static == {"weight_identity", "weight_cast", "bn_scale", "shape", "gather_batch", "concat_shape"}
    analysis = analyze(graph)
    # conv, bn_sub, bn_mul, relu, reshape, fc: 6 positions, 7 cuts, each sending one activation at most.
    assert len(analysis.cuts) == 7
    assert [cut.tensors for cut in analysis.cuts] == [("x",), ("c",), ("centred",), ("scaled",), ("r",), ("flat",), ()]
    static_tensors = {out for node in graph.nodes if node.is_static for out in node.outputs}
    assert all(graph.is_constant(name) for name in static_tensors)
    # The static Mul is counted once, apart from the per-inference MACs.
    assert analysis.totals.static_macs == 4 and analysis.totals.static_nodes == 6
    assert analysis.totals.macs == sum(c.macs for c in analysis.nodes if not c.static)


def test_every_cut_chains_back_with_each_part_holding_its_static_values(tmp_path):
    model = _exported_like()
    analysis = analyze(load_proto(model, tmp_path))
    worst, checked = max_chain_error(analysis, model)
    assert checked == 7 and worst < 1e-5

"""A client step computed from the means of its maps (tiles/pooled_step.py), as the workers' hand-off runs it."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.tiles.pooled_step import mean_of, pooled_step


def _step(path, pool: onnx.NodeProto, opset: int, also_read: bool = False):
    """A squeeze-and-excitation step on map x (1x4x6x5): `pool`, a 1x1 Conv, HardSigmoid; with `also_read`, x is
    also added to itself (a reader the means cannot stand in for)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4, 1, 1)).astype(np.float32), "w")
    nodes = [pool, helper.make_node("Conv", ["pooled", "w"], ["c"]), helper.make_node("HardSigmoid", ["c"], ["gate"])]
    outputs = [helper.make_tensor_value_info("gate", onnx.TensorProto.FLOAT, [1, 4, 1, 1])]
    if also_read:
        nodes.append(helper.make_node("Add", ["x", "x"], ["twice"]))
        outputs.append(helper.make_tensor_value_info("twice", onnx.TensorProto.FLOAT, [1, 4, 6, 5]))
    axes = [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")] if len(pool.input) == 2 else []
    graph = helper.make_graph(nodes, "step", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 6, 5])],
                              outputs, [w, *axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_the_step_from_the_cells_sums_equals_the_step_on_the_stitched_map(tmp_path):
    """GlobalAveragePool, ReduceMean with its axes as an attribute (opset 13) and as an input (opset 18): the step
    fed with the mean made from two cells' sums gives the step's output on the whole map."""
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 5)).astype(np.float32)
    cells = [x[:, :, :, :2], x[:, :, :, 2:]]  # a 1x2 grid's cells
    pools = [(helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), 13),
             (helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[2, 3], keepdims=1), 13),
             (helper.make_node("ReduceMean", ["x", "axes"], ["pooled"]), 18)]
    for number, (pool, opset) in enumerate(pools):
        path = _step(tmp_path / f"step{number}.onnx", pool, opset)
        expected = create_session(path, threads=1).run(None, {"x": x})[0]
        pooled = pooled_step(path, {"x": "NCHW"})
        assert pooled is not None and pooled.means == {"x": ("pooled",)}, pool.op_type
        mean = mean_of([cell.sum(axis=(2, 3), dtype=np.float64) for cell in cells], 6 * 5, np.dtype(np.float32))
        got = create_session(pooled.model, threads=1).run(None, {"pooled": mean})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_step_that_reads_the_map_otherwise_is_not_pooled(tmp_path):
    """A map read by anything but a mean over rows and columns (here an Add), or a mean over the channels, must
    travel whole: pooled_step says so with None."""
    gap = helper.make_node("GlobalAveragePool", ["x"], ["pooled"])
    assert pooled_step(_step(tmp_path / "add.onnx", gap, 13, also_read=True), {"x": "NCHW"}) is None
    channels = helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[1], keepdims=1)
    assert pooled_step(_step(tmp_path / "channels.onnx", channels, 13), {"x": "NCHW"}) is None


def test_an_nhwc_map_s_mean_over_its_rows_and_columns_is_pooled_in_its_layout(tmp_path):
    """tf2onnx's squeeze-and-excitation on an NHWC map: ReduceMean over axes 1 and 2. The pooled step takes the
    mean as (N, 1, 1, C); a GlobalAveragePool (NCHW by definition) or a mean over axes 2 and 3 of an NHWC map is
    not a mean over its rows and columns."""
    x = np.random.default_rng(2).standard_normal((1, 6, 5, 4)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[1, 2], keepdims=1),
             helper.make_node("Sigmoid", ["pooled"], ["gate"])]
    graph = helper.make_graph(nodes, "step", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 6, 5, 4])],
                              [helper.make_tensor_value_info("gate", onnx.TensorProto.FLOAT, [1, 1, 1, 4])])
    path = tmp_path / "nhwc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    expected = create_session(path, threads=1).run(None, {"x": x})[0]
    pooled = pooled_step(path, {"x": "NHWC"})
    assert pooled is not None and pooled.dtypes == {"x": np.dtype(np.float32)}
    cells = [x[:, :3], x[:, 3:]]  # a 2x1 grid's cells (rows)
    mean = mean_of([cell.sum(axis=(1, 2), dtype=np.float64) for cell in cells], 6 * 5, pooled.dtypes["x"], "NHWC")
    np.testing.assert_allclose(create_session(pooled.model, threads=1).run(None, {"pooled": mean})[0], expected,
                               rtol=1e-6)
    assert pooled_step(path, {"x": "NCHW"}) is None  # axes 1 and 2 of an NCHW map are channels and rows
    gap = helper.make_node("GlobalAveragePool", ["x"], ["pooled"])
    assert pooled_step(_step(tmp_path / "gap.onnx", gap, 13), {"x": "NHWC"}) is None

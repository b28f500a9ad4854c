"""Tiles on what exporters write: unfolded batch norm (per-channel Sub/Mul/Add), Cast, constants held as
external data or in Constant nodes (issue 11, item 4)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitnn.cost_models.catalog import load_device
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.tiles.export import write_tiles
from splitnn.onnxsplit.tiles.planning import plan_tiles
from tests.helpers import make_model, tensor, weight


def _unfolded_bn(spatial_bias: bool = False):
    channel = [1, 8, 1, 1] if not spatial_bias else [1, 8, 16, 16]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sub", ["c1", "mean"], ["centred"], name="bn_sub"),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="bn_mul"),
        helper.make_node("Constant", [], ["shift"], name="shift_const",
                         value=numpy_helper.from_array(np.full(channel, 0.1, np.float32), "shift")),
        helper.make_node("Add", ["scaled", "shift"], ["shifted"], name="bn_add"),
        helper.make_node("Cast", ["shifted"], ["cast"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Clip", ["cast", "lo", "hi"], ["relu6"], name="relu6"),
        helper.make_node("MaxPool", ["relu6"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc"),
    ]
    inits = [weight("w1", [8, 3, 3, 3], 1), weight("mean", channel, 2), weight("scale", channel, 3),
             weight("w2", [16, 8, 3, 3], 4), weight("fc", [16, 10], 5),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    return make_model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor("y", [1, 10])], inits)


def test_unfolded_batch_norm_and_cast_are_in_the_stack(tmp_path):
    path = tmp_path / "bn.onnx"
    # Weights as external data: the tiles and the remainder must read constants from there too.
    onnx.save_model(_unfolded_bn(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="bn.data", size_threshold=0)
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "c2", stacks=1)
    assert [layer.op_type for layer in plan.stack] == ["Conv", "Sub", "Mul", "Add", "Cast", "Clip", "MaxPool", "Conv"]
    document = write_tiles(analysis, plan, tmp_path / "tiles")  # verified against the model when written
    assert document.verification.passed and document.verification.max_abs_err < 1e-4


def test_a_constant_that_varies_over_positions_ends_the_stack(tmp_path):
    path = tmp_path / "spatial.onnx"
    onnx.save_model(_unfolded_bn(spatial_bias=True), str(path))
    analysis = analyze(load_graph(path))
    with pytest.raises(SplitnnError, match="not on the fused stack"):
        plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "c2", stacks=1)
    assert [layer.output for layer in plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "c1", stacks=1).stack] == ["c1"]


def _keras_like():
    """What tf2onnx writes for a Keras CNN: an NHWC input, a Transpose to NCHW, then the convolutions."""
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[0, 0, 0, 0], kernel_shape=[3, 3],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc"),
    ]
    inits = [weight("w1", [8, 3, 3, 3], 1), weight("b1", [8], 2), weight("w2", [16, 8, 3, 3], 3),
             weight("fc", [16, 10], 4)]
    return make_model(nodes, [tensor("image", [1, 24, 20, 3])], [tensor("y", [1, 10])], inits)


def test_an_nhwc_input_is_tiled_in_its_height_and_width(tmp_path):
    path = tmp_path / "keras.onnx"
    onnx.save_model(_keras_like(), str(path))
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "r2", stacks=1)
    assert plan.stack[0].op_type == "Transpose" and plan.stack[0].in_layout == "NHWC"
    assert plan.stack[0].in_shape == (1, 3, 24, 20)  # logical N, C, H, W
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.image_layout == "NHWC" and document.verification.passed
    tile = onnx.load(str(tmp_path / "tiles" / document.artifacts.tiles[0]))
    dims = [d.dim_value for d in tile.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == 1 and dims[3] == 3 and dims[1] < 24 and dims[2] < 20  # a region of H and W, all channels
    reused = write_tiles(analysis, plan, tmp_path / "reuse", reuse=True)  # issue 31, item 4: refused before
    assert reused.verification.passed and reused.reuse_enabled and reused.reuse.saved_macs > 0


def test_an_nhwc_tile_plan_runs_on_dask(tmp_path):
    from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench

    path = tmp_path / "keras.onnx"
    onnx.save_model(_keras_like(), str(path))
    analysis = analyze(load_graph(path))
    write_tiles(analysis, plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "r2", stacks=1), tmp_path / "tiles")
    report = run_tile_bench(tmp_path / "tiles", TileBenchOptions(images=1, scaling=False))
    assert report.outputs_match is True and len(report.tiles) == 4


def test_silu_written_out_stays_in_the_stack(tmp_path):
    """PyTorch exports SiLU as x * Sigmoid(x): a diamond that stays per position, so the stack goes on."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sigmoid", ["c1"], ["gate"], name="silu_sigmoid"),
        helper.make_node("Mul", ["c1", "gate"], ["s1"], name="silu_mul"),
        helper.make_node("Conv", ["s1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc"),
    ]
    model = make_model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor("y", [1, 10])],
                       [weight("w1", [8, 3, 3, 3], 1), weight("w2", [8, 8, 3, 3], 2), weight("fc", [8, 10], 3)])
    onnx.save_model(model, str(tmp_path / "silu.onnx"))
    analysis = analyze(load_graph(tmp_path / "silu.onnx"))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "c2", stacks=1)
    assert [layer.op_type for layer in plan.stack] == ["Conv", "Sigmoid", "Mul", "Conv"]
    assert write_tiles(analysis, plan, tmp_path / "tiles").verification.passed
    # issue 31, item 4: --reuse was refused here; Conv + SiLU run as one unit of the second phase
    reused = write_tiles(analysis, plan, tmp_path / "reuse", reuse=True)
    assert reused.verification.passed and reused.reuse.saved_macs > 0


def test_same_padding_is_tiled_exactly_on_odd_sizes(tmp_path):
    """Keras 'same' padding, as keras2onnx and tf2onnx write it (auto_pad SAME_UPPER), on a size that the stride
    does not divide: the pads the ONNX rule gives for the whole image, kept at each tile's true borders."""
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], name="conv1", auto_pad="SAME_UPPER", kernel_shape=[3, 3],
                         strides=[2, 2]),
        helper.make_node("PRelu", ["c1", "slope"], ["p1"], name="prelu1"),
        helper.make_node("MaxPool", ["p1"], ["m1"], name="pool1", auto_pad="SAME_LOWER", kernel_shape=[3, 3],
                         strides=[2, 2]),
        helper.make_node("Conv", ["m1", "w2"], ["c2"], name="conv2", auto_pad="VALID", kernel_shape=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["y"], name="flatten"),
    ]
    model = make_model(nodes, [tensor("image", [1, 27, 23, 3])], [tensor("y", [1, 8])],
                       [weight("w1", [6, 3, 3, 3], 1), weight("slope", [1, 6, 1, 1], 2), weight("w2", [8, 6, 2, 2], 3)])
    onnx.save_model(model, str(tmp_path / "same.onnx"))
    analysis = analyze(load_graph(tmp_path / "same.onnx"))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (3, 2), "c2", stacks=1)
    conv1, pool1 = plan.stack[1], plan.stack[3]
    assert conv1.out_shape[2:] == (14, 12) and conv1.window.pads == (1, 1, 1, 1)  # 27 -> 14: 2 rows of pad, 1 each
    assert pool1.window.pads == (1, 1, 0, 0)  # 14 -> 7 with a 3x3 window, stride 2: one pad, first (SAME_LOWER)
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.verification.passed and document.verification.max_abs_err < 1e-5

"""Each operator's MAC formula against numbers worked out by hand."""
from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from splitnn.cost_models import node_costs
from splitnn.cost_models.registry import registered_ops
from splitnn.onnxsplit.analysis.analyze import analyze
from tests.helpers import load_proto, make_model, tensor, weight


def single(tmp_path, node, inputs, output_shape, initializers=(), opset=13):
    model = make_model([node], inputs, [tensor(node.output[0], None)], initializers, opset)
    graph = load_proto(model, tmp_path)
    assert graph.shape(node.output[0]) == output_shape
    return node_costs(graph)[0]


def conv_node(**attrs):
    return helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)


def test_conv_plain(tmp_path):
    # N*Cout*Hout*Wout*(Cin/group)*kh*kw = 1*8*6*6*4*3*3
    cost = single(tmp_path, conv_node(), [tensor("x", [1, 4, 8, 8])], (1, 8, 6, 6), [weight("w", (8, 4, 3, 3))])
    assert cost.macs == 1 * 8 * 6 * 6 * 4 * 3 * 3 == 10368
    assert cost.params == 8 * 4 * 9
    assert cost.param_bytes == 8 * 4 * 9 * 4
    assert cost.output_bytes == 8 * 6 * 6 * 4


def test_conv_strided_padded_grouped(tmp_path):
    # 16 -> (16 + 2 - 3)//2 + 1 = 8; groups 2: Cin/group = 2
    node = conv_node(strides=[2, 2], pads=[1, 1, 1, 1], group=2)
    cost = single(tmp_path, node, [tensor("x", [2, 4, 16, 16])], (2, 6, 8, 8), [weight("w", (6, 2, 3, 3))])
    assert cost.macs == 2 * 6 * 8 * 8 * 2 * 9 == 13824


def test_conv_depthwise_dilated(tmp_path):
    # dilation 2 makes a 3x3 kernel span 5: 10 - 5 + 1 = 6; depthwise: Cin/group = 1
    node = conv_node(group=4, dilations=[2, 2])
    cost = single(tmp_path, node, [tensor("x", [1, 4, 10, 10])], (1, 4, 6, 6), [weight("w", (4, 1, 3, 3))])
    assert cost.macs == 4 * 6 * 6 * 1 * 9 == 1296


def test_conv_auto_pad_same_upper(tmp_path):
    node = conv_node(auto_pad="SAME_UPPER", strides=[2, 2])
    cost = single(tmp_path, node, [tensor("x", [1, 3, 15, 15])], (1, 5, 8, 8), [weight("w", (5, 3, 3, 3))])
    assert cost.macs == 5 * 8 * 8 * 3 * 9 == 8640


def test_conv_transpose(tmp_path):
    # (4-1)*2 + 3 = 9; every input element scatters Cout/group*kh*kw
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    cost = single(tmp_path, node, [tensor("x", [1, 3, 4, 4])], (1, 5, 9, 9), [weight("w", (3, 5, 3, 3))])
    assert cost.macs == 1 * 3 * 4 * 4 * 5 * 9 == 2160


def test_gemm_with_transposes(tmp_path):
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1)
    cost = single(
        tmp_path, node, [tensor("a", [7, 3])], (3, 5), [weight("b", (5, 7)), weight("c", (5,))]
    )
    assert cost.macs == 3 * 5 * 7  # M*N*K, K=7 after transA
    assert cost.params == 35 + 5


def test_matmul_batched_broadcast(tmp_path):
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    cost = single(tmp_path, node, [tensor("a", [2, 3, 4, 6])], (2, 3, 4, 5), [weight("b", (6, 5))])
    assert cost.macs == 2 * 3 * 4 * 5 * 6


def test_pools(tmp_path):
    mp = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2])
    assert single(tmp_path, mp, [tensor("x", [1, 2, 9, 9])], (1, 2, 4, 4)).macs == 2 * 4 * 4 * 9
    ap = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    assert single(tmp_path, ap, [tensor("x", [1, 2, 8, 8])], (1, 2, 4, 4)).macs == 2 * 4 * 4 * 4
    gap = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    assert single(tmp_path, gap, [tensor("x", [1, 2, 8, 8])], (1, 2, 1, 1)).macs == 2 * 8 * 8


def test_batch_norm_statistics_are_not_params(tmp_path):
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    inits = [weight(n, (3,)) for n in "sbmv"]
    cost = single(tmp_path, node, [tensor("x", [1, 3, 4, 4])], (1, 3, 4, 4), inits)
    assert cost.macs == 48
    assert cost.params == 6  # scale and bias; mean and var are statistics
    assert cost.param_bytes == 4 * 3 * 4  # but all four are stored


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Sqrt", "Erf"])
def test_unary_elementwise(tmp_path, op):
    node = helper.make_node(op, ["x"], ["y"])
    assert single(tmp_path, node, [tensor("x", [2, 3, 5])], (2, 3, 5), opset=14).macs == 30


def test_clip_and_prelu(tmp_path):
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    lo = helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0])
    hi = helper.make_tensor("hi", TensorProto.FLOAT, [], [6.0])
    assert single(tmp_path, clip, [tensor("x", [4, 5])], (4, 5), [lo, hi]).macs == 20
    prelu = helper.make_node("PRelu", ["x", "slope"], ["y"])
    assert single(tmp_path, prelu, [tensor("x", [1, 3, 2, 2])], (1, 3, 2, 2), [weight("slope", (3, 1, 1))]).macs == 12


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_binary_broadcast(tmp_path, op):
    node = helper.make_node(op, ["a", "b"], ["y"])
    cost = single(tmp_path, node, [tensor("a", [2, 1, 5]), tensor("b", [3, 1])], (2, 3, 5))
    assert cost.macs == 30  # one operation per broadcast output element


def test_data_movement_is_free(tmp_path):
    concat = helper.make_node("Concat", ["a", "b"], ["y"], axis=1)
    cost = single(tmp_path, concat, [tensor("a", [1, 2, 3]), tensor("b", [1, 4, 3])], (1, 6, 3))
    assert cost.macs == 0 and cost.known and cost.output_bytes == 18 * 4
    transpose = helper.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 1])
    assert single(tmp_path, transpose, [tensor("a", [1, 2, 3])], (1, 3, 2)).macs == 0
    flatten = helper.make_node("Flatten", ["a"], ["y"], axis=1)
    assert single(tmp_path, flatten, [tensor("a", [2, 3, 4])], (2, 12)).macs == 0


def test_reshape_from_constant_shape(tmp_path):
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 8])
    node = helper.make_node("Reshape", ["a", "shape"], ["y"])
    cost = single(tmp_path, node, [tensor("a", [2, 3, 4])], (3, 8), [shape])
    assert cost.macs == 0
    assert cost.params == 0  # integer constants are not parameters...
    assert cost.param_bytes == 16  # ...but they are stored


def test_resize_linear_and_nearest(tmp_path):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    linear = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    assert single(tmp_path, linear, [tensor("x", [1, 2, 4, 4])], (1, 2, 8, 8), [scales]).macs == 128 * 4
    nearest = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    assert single(tmp_path, nearest, [tensor("x", [1, 2, 4, 4])], (1, 2, 8, 8), [scales]).macs == 128


def test_softmax_and_reduce_mean(tmp_path):
    softmax = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    assert single(tmp_path, softmax, [tensor("x", [2, 10])], (2, 10)).macs == 60
    reduce = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)
    assert single(tmp_path, reduce, [tensor("x", [2, 10])], (2,)).macs == 20


def test_unknown_operator_counts_zero_and_is_named(tmp_path):
    # (Einsum was the example here until it got a formula; a determinant has none.)
    node = helper.make_node("Det", ["a"], ["y"], name="mystery")
    model = make_model([node], [tensor("a", [2, 3, 3])], [tensor("y", [2])])
    result = analyze(load_proto(model, tmp_path))
    assert result.nodes[0].macs == 0 and not result.nodes[0].known
    assert result.unknown_ops == {"Det": ["mystery"]}
    assert "Det" in result.warnings[0] and "0 MACs" in result.warnings[0]


def test_shared_initializer_counted_once(tmp_path):
    w = weight("w", (4, 4))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])]
    model = make_model(nodes, [tensor("x", [1, 4])], [tensor("y", [1, 4])], [w])
    result = analyze(load_proto(model, tmp_path))
    assert [c.params for c in result.nodes] == [16, 0]
    assert result.totals.params == 16 and result.totals.param_bytes == 64


def test_required_operators_have_handlers():
    required = {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
        "BatchNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "PRelu", "Add", "Mul",
        "Sub", "Div", "Concat", "Reshape", "Flatten", "Transpose", "Resize", "Softmax", "ReduceMean",
    }
    assert required <= set(registered_ops())

"""onnxruntime's contrib and quantized operators (issue 30, item 4): each one's MACs against numbers worked out by hand
from its inputs and attributes as onnxruntime's ContribOperators.md states them, and its operator class.

Every model here is run once by onnxruntime, which checks that it is a valid use of the operator and that the output
shapes it declares (read by the loader without a probe run) are the ones onnxruntime computes.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitnn.cost_models import node_costs
from splitnn.cost_models.op_classes import DENSE_CONV, DEPTHWISE_CONV, ELEMENTWISE, MATMUL, TRANSCENDENTAL, op_class
from tests.helpers import load_proto, session

MS = "com.microsoft"
F, U8, I8, I32, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64
_NP = {F: np.float32, U8: np.uint8, I8: np.int8, I32: np.int32, I64: np.int64}


def const(name, value, elem=F):
    return numpy_helper.from_array(np.asarray(value, dtype=_NP[elem]), name)


def priced(tmp_path, node, inputs, outputs, initializers=(), feeds=None):
    """The node alone in a model (com.microsoft imported), run once by onnxruntime; its cost and its operator class.
    `inputs` and `outputs`: (name, shape, element type); `feeds`: values for integer inputs that must hold some."""
    model = helper.make_model(
        helper.make_graph([node], "contrib", [helper.make_tensor_value_info(n, e, s) for n, s, e in inputs],
                          [helper.make_tensor_value_info(n, e, s) for n, s, e in outputs], list(initializers)),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    rng = np.random.default_rng(0)
    given = {n: (rng.standard_normal(s) if e == F else rng.integers(0, 8, s)).astype(_NP[e]) for n, s, e in inputs}
    results = session(model).run([n for n, _, _ in outputs], {**given, **(feeds or {})})
    assert [r.shape for r in results] == [tuple(s) for _, s, _ in outputs]  # the shapes declared are onnxruntime's
    graph = load_proto(model, tmp_path)
    index = next(i for i, n in enumerate(graph.nodes) if n.name == node.name)
    cost = node_costs(graph)[index]
    assert cost.known
    return cost.macs, op_class(graph.nodes[index], graph)


def lstm_model(path, seq=5, batch=2, inputs=8, hidden=16, direction="forward"):
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    weights = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
               for n, s in (("W", (dirs, 4 * hidden, inputs)), ("R", (dirs, 4 * hidden, hidden)),
                            ("B", (dirs, 8 * hidden)))]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h"], name="lstm", hidden_size=hidden,
                            direction=direction)
    model = helper.make_model(
        helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", F, [seq, batch, inputs])],
                          [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("y_h", F, None)],
                          weights),
        opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_dynamic_quantize_lstm_from_onnxruntimes_quantizer(tmp_path, direction):
    """quantize_dynamic turns an LSTM into DynamicQuantizeLSTM (W [dirs, input, 4*hidden], R [dirs, hidden,
    4*hidden], int8): priced as the float LSTM, seq * batch * (|W| + |R|)."""
    from onnxruntime.quantization import quantize_dynamic

    lstm_model(tmp_path / "lstm.onnx", direction=direction)
    quantize_dynamic(str(tmp_path / "lstm.onnx"), str(tmp_path / "int8.onnx"))
    model = onnx.load(str(tmp_path / "int8.onnx"))
    assert [(n.op_type, n.domain) for n in model.graph.node] == [("DynamicQuantizeLSTM", MS)]
    graph = load_proto(model, tmp_path, name="q.onnx")
    dirs = 2 if direction == "bidirectional" else 1
    assert graph.shape(graph.nodes[0].inputs[1]) == (dirs, 8, 64)  # transposed against LSTM's W
    expected = 5 * 2 * dirs * (8 * 64 + 16 * 64)  # seq * batch * (|W| + |R|)
    assert node_costs(graph)[0].macs == expected == dirs * 15360
    assert op_class(graph.nodes[0], graph) == MATMUL
    float_graph = load_proto(onnx.load(str(tmp_path / "lstm.onnx")), tmp_path, name="f.onnx")
    assert node_costs(float_graph)[0].macs == expected  # the float model's count


def test_dynamic_quantize_matmul(tmp_path):
    node = helper.make_node("DynamicQuantizeMatMul", ["a", "b", "b_scale"], ["y"], name="n", domain=MS)
    macs, klass = priced(tmp_path, node, [("a", [2, 3, 8], F)], [("y", [2, 3, 5], F)],
                         [const("b", np.ones((8, 5)), I8), const("b_scale", 0.1)])
    assert (macs, klass) == (2 * 3 * 5 * 8, MATMUL)  # batch * M * N * K


def test_matmul_integer(tmp_path):
    node = helper.make_node("MatMulInteger", ["a", "b", "a_zp"], ["y"], name="n")
    macs, klass = priced(tmp_path, node, [("a", [3, 8], U8)], [("y", [3, 5], I32)],
                         [const("b", np.ones((8, 5)), U8), const("a_zp", 2, U8)])
    assert (macs, klass) == (3 * 5 * 8, MATMUL)


def test_matmul_integer_to_float(tmp_path):
    node = helper.make_node("MatMulIntegerToFloat", ["a", "b", "a_scale", "b_scale", "a_zp"], ["y"], name="n",
                            domain=MS)
    macs, klass = priced(tmp_path, node, [("a", [4, 8], U8)], [("y", [4, 6], F)],
                         [const("b", np.ones((8, 6)), I8), const("a_scale", 0.1), const("b_scale", 0.2),
                          const("a_zp", 3, U8)])
    assert (macs, klass) == (4 * 6 * 8, MATMUL)


def _qlinear_conv(tmp_path, channels, group, weight_in):
    names = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"]
    node = helper.make_node("QLinearConv", names, ["y"], name="n", group=group)
    inits = [const("x_scale", 0.1), const("x_zp", 128, U8), const("w", np.ones((8, weight_in, 3, 3)), I8),
             const("w_scale", 0.05), const("w_zp", 0, I8), const("y_scale", 0.2), const("y_zp", 128, U8)]
    return priced(tmp_path, node, [("x", [1, channels, 8, 8], U8)], [("y", [1, 8, 6, 6], U8)], inits)


def test_qlinear_conv(tmp_path):
    # As Conv: N*Cout*Hout*Wout*(Cin/group)*kh*kw, the weight the fourth input
    assert _qlinear_conv(tmp_path, 4, 1, 4) == (1 * 8 * 6 * 6 * 4 * 3 * 3, DENSE_CONV) == (10368, DENSE_CONV)
    assert _qlinear_conv(tmp_path, 8, 8, 1) == (8 * 6 * 6 * 9, DEPTHWISE_CONV)


def test_qlinear_matmul(tmp_path):
    names = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    node = helper.make_node("QLinearMatMul", names, ["y"], name="n")
    inits = [const("a_scale", 0.1), const("a_zp", 128, U8), const("b", np.ones((8, 5)), U8), const("b_scale", 0.05),
             const("b_zp", 128, U8), const("y_scale", 0.2), const("y_zp", 128, U8)]
    macs, klass = priced(tmp_path, node, [("a", [2, 3, 8], U8)], [("y", [2, 3, 5], U8)], inits)
    assert (macs, klass) == (2 * 3 * 5 * 8, MATMUL)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_qlinear_add_and_mul(tmp_path, op):
    names = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    node = helper.make_node(op, names, ["y"], name="n", domain=MS)
    inits = [const("a_scale", 0.1), const("a_zp", 128, U8), const("b", np.ones((3, 1, 1)), U8),
             const("b_scale", 0.05), const("b_zp", 128, U8), const("y_scale", 0.2), const("y_zp", 128, U8)]
    macs, klass = priced(tmp_path, node, [("a", [1, 3, 4, 4], U8)], [("y", [1, 3, 4, 4], U8)], inits)
    assert (macs, klass) == (48, ELEMENTWISE)  # one per (broadcast) output element


def test_attention_packed_weights(tmp_path):
    # input [2, 4, 8], weights [8, 24]: the projection 2*4*8*24, then QK^T and AV each B*S*S*hidden = 2*4*4*8
    node = helper.make_node("Attention", ["x", "w", "bias"], ["y"], name="n", domain=MS, num_heads=2)
    macs, klass = priced(tmp_path, node, [("x", [2, 4, 8], F)], [("y", [2, 4, 8], F)],
                         [const("w", np.ones((8, 24)) * 0.01), const("bias", np.zeros(24))])
    assert (macs, klass) == (2 * 4 * 8 * 24 + 2 * 4 * 4 * 8 + 2 * 4 * 4 * 8, MATMUL) == (2048, MATMUL)


def test_attention_qkv_hidden_sizes_and_past(tmp_path):
    # A smaller V (qkv_hidden_sizes 8, 8, 4): the projection 2*4*8*20, QK^T 2*4*4*8, AV 2*4*4*4
    node = helper.make_node("Attention", ["x", "w", "bias"], ["y"], name="n", domain=MS, num_heads=2,
                            qkv_hidden_sizes=[8, 8, 4])
    macs, _ = priced(tmp_path, node, [("x", [2, 4, 8], F)], [("y", [2, 4, 4], F)],
                     [const("w", np.ones((8, 20)) * 0.01), const("bias", np.zeros(20))])
    assert macs == 2 * 4 * 8 * 20 + 2 * 4 * 4 * 8 + 2 * 4 * 4 * 4 == 1664
    # A past of 3 keys [2, B, heads, 3, head_size]: each of the 4 queries reads 3 + 4 = 7 keys
    node = helper.make_node("Attention", ["x", "w", "bias", "", "past"], ["y", "present"], name="n", domain=MS,
                            num_heads=2, unidirectional=1)
    macs, _ = priced(tmp_path, node, [("x", [2, 4, 8], F), ("past", [2, 2, 2, 3, 4], F)],
                     [("y", [2, 4, 8], F), ("present", [2, 2, 2, 7, 4], F)],
                     [const("w", np.ones((8, 24)) * 0.01), const("bias", np.zeros(24))])
    assert macs == 2 * 4 * 8 * 24 + 2 * (2 * 4 * 7 * 8) == 2432


def test_multi_head_attention(tmp_path):
    # query [2, 4, 8], key [2, 6, 8], value [2, 6, 12]: B*S*L*(Hq + Hv) = 2*4*6*(8 + 12)
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="n", domain=MS, num_heads=2)
    macs, klass = priced(tmp_path, node, [("q", [2, 4, 8], F), ("k", [2, 6, 8], F), ("v", [2, 6, 12], F)],
                         [("y", [2, 4, 12], F)])
    assert (macs, klass) == (2 * 4 * 6 * (8 + 12), MATMUL) == (960, MATMUL)


def test_multi_head_attention_with_a_past(tmp_path):
    # 2 new keys after a past of 3 [B, heads, 3, head_size]: every query reads 5
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "", "past_k", "past_v"],
                            ["y", "present_k", "present_v"], name="n", domain=MS, num_heads=2)
    macs, _ = priced(tmp_path, node, [("q", [1, 2, 8], F), ("k", [1, 2, 8], F), ("v", [1, 2, 8], F),
                                      ("past_k", [1, 2, 3, 4], F), ("past_v", [1, 2, 3, 4], F)],
                     [("y", [1, 2, 8], F), ("present_k", [1, 2, 5, 4], F), ("present_v", [1, 2, 5, 4], F)])
    assert macs == 1 * 2 * 5 * (8 + 8) == 160


def _gqa(tmp_path, sequence, past, **attrs):
    """4 query heads of 16 (its rotary embedding, on onnxruntime's CPU, wants a multiple of 16) over 2 key-value
    heads; `past` keys already in the cache."""
    total = past + sequence
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total"],
                            ["y", "present_k", "present_v"], name="n", domain=MS, num_heads=4, kv_num_heads=2, **attrs)
    inputs = [("q", [1, sequence, 64], F), ("k", [1, sequence, 32], F), ("v", [1, sequence, 32], F),
              ("past_k", [1, 2, past, 16], F), ("past_v", [1, 2, past, 16], F), ("seqlens_k", [1], I32),
              ("total", [], I32)]
    if not past:  # a prompt: no cache yet
        node.input[3:5] = ["", ""]
        del inputs[3:5]
    outputs = [("y", [1, sequence, 64], F), ("present_k", [1, 2, total, 16], F), ("present_v", [1, 2, total, 16], F)]
    inits = []
    if attrs.get("do_rotary"):
        node.input.extend(["cos", "sin"])
        inits = [const("cos", np.ones((16, 8))), const("sin", np.zeros((16, 8)))]
    feeds = {"seqlens_k": np.array([total - 1], np.int32), "total": np.array(total, np.int32)}
    return priced(tmp_path, node, inputs, outputs, inits, feeds)


def test_group_query_attention(tmp_path):
    # A prompt of 4: every one of the 4 query heads (of 4) reads the 4 keys and values: 2*B*S*T*num_heads*head_size
    assert _gqa(tmp_path, 4, 0) == (2 * 1 * 4 * 4 * 64, MATMUL) == (2048, MATMUL)
    # One new token after 3: T = 4
    assert _gqa(tmp_path, 1, 3)[0] == 2 * 1 * 1 * 4 * 64 == 512
    # With the rotary embedding of Q (4 heads) and K (2 heads): 2 per element on top
    assert _gqa(tmp_path, 4, 0, do_rotary=1)[0] == 2048 + 2 * 4 * (4 + 2) * 16 == 2816


def test_skip_layer_normalization(tmp_path):
    # input + skip + bias, then mean, variance and the scaled output: 5 per element of [2, 3, 8]
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"], name="n",
                            domain=MS)
    inits = [const("gamma", np.ones(8)), const("beta", np.zeros(8)), const("bias", np.zeros(8))]
    macs, klass = priced(tmp_path, node, [("x", [2, 3, 8], F), ("skip", [2, 3, 8], F)], [("y", [2, 3, 8], F)], inits)
    assert (macs, klass) == (5 * 48, ELEMENTWISE)
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["y"], name="n", domain=MS)
    macs, _ = priced(tmp_path, node, [("x", [2, 3, 8], F), ("skip", [2, 3, 8], F)], [("y", [2, 3, 8], F)],
                     [const("gamma", np.ones(8))])
    assert macs == 4 * 48  # no bias


def test_skip_simplified_layer_normalization(tmp_path):
    # input + skip, then the sum of squares and the scaled output (RMS): 3 per element; 4 with the bias
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma"], ["y"], name="n", domain=MS)
    macs, klass = priced(tmp_path, node, [("x", [2, 3, 8], F), ("skip", [2, 3, 8], F)], [("y", [2, 3, 8], F)],
                         [const("gamma", np.ones(8))])
    assert (macs, klass) == (3 * 48, ELEMENTWISE)
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"], ["y"], name="n",
                            domain=MS)
    macs, _ = priced(tmp_path, node, [("x", [2, 3, 8], F), ("skip", [2, 3, 8], F)], [("y", [2, 3, 8], F)],
                     [const("gamma", np.ones(8)), const("bias", np.zeros(8))])
    assert macs == 4 * 48


def test_fast_gelu(tmp_path):
    node = helper.make_node("FastGelu", ["x", "bias"], ["y"], name="n", domain=MS)
    macs, klass = priced(tmp_path, node, [("x", [2, 3, 8], F)], [("y", [2, 3, 8], F)], [const("bias", np.zeros(8))])
    assert (macs, klass) == (2 * 48, TRANSCENDENTAL)  # the bias's add and the tanh approximation
    node = helper.make_node("FastGelu", ["x"], ["y"], name="n", domain=MS)
    assert priced(tmp_path, node, [("x", [2, 3, 8], F)], [("y", [2, 3, 8], F)])[0] == 48


def test_bias_gelu(tmp_path):
    node = helper.make_node("BiasGelu", ["a", "b"], ["y"], name="n", domain=MS)
    macs, klass = priced(tmp_path, node, [("a", [2, 3, 8], F)], [("y", [2, 3, 8], F)], [const("b", np.zeros(8))])
    assert (macs, klass) == (2 * 48, TRANSCENDENTAL)


def test_gelu(tmp_path):
    node = helper.make_node("Gelu", ["x"], ["y"], name="n", domain=MS)
    assert priced(tmp_path, node, [("x", [2, 3, 8], F)], [("y", [2, 3, 8], F)]) == (48, TRANSCENDENTAL)


def test_matmul_n_bits(tmp_path):
    # A [1, 3, 32] by a 4-bit weight of K=32, N=8 in blocks of 16 (B packed [N, 2 blocks, 8 bytes]): 3 * 8 * 32
    node = helper.make_node("MatMulNBits", ["a", "b", "scales"], ["y"], name="n", domain=MS, K=32, N=8, bits=4,
                            block_size=16)
    inits = [const("b", np.full((8, 2, 8), 0x88), U8), const("scales", np.full((8, 2), 0.1))]
    macs, klass = priced(tmp_path, node, [("a", [1, 3, 32], F)], [("y", [1, 3, 8], F)], inits)
    assert (macs, klass) == (3 * 8 * 32, MATMUL) == (768, MATMUL)


def test_rotary_embedding(tmp_path):
    positions = ("positions", [1, 4], I64)
    feeds = {"positions": np.arange(4, dtype=np.int64)[None]}
    # The whole head rotated (cos cache [max positions, head_size / 2] = 4): 2 per element of [1, 4, 16]
    node = helper.make_node("RotaryEmbedding", ["x", "positions", "cos", "sin"], ["y"], name="n", domain=MS)
    inits = [const("cos", np.ones((8, 4))), const("sin", np.zeros((8, 4)))]
    macs, klass = priced(tmp_path, node, [("x", [1, 2, 4, 8], F), positions], [("y", [1, 2, 4, 8], F)], inits, feeds)
    assert (macs, klass) == (2 * 64, ELEMENTWISE)
    # 2 heads of 8 with rotary_embedding_dim 4: half of each head is rotated, the rest passes through
    node = helper.make_node("RotaryEmbedding", ["x", "positions", "cos", "sin"], ["y"], name="n", domain=MS,
                            num_heads=2, rotary_embedding_dim=4)
    inits = [const("cos", np.ones((8, 2))), const("sin", np.zeros((8, 2)))]
    macs, _ = priced(tmp_path, node, [("x", [1, 4, 16], F), positions], [("y", [1, 4, 16], F)], inits, feeds)
    assert macs == 2 * (1 * 4 * 2 * 4) == 64

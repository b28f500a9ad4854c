"""Operator classes: the groups of operators a device profile gives one compute rate each.

Classes follow how runtimes implement operators (a depthwise convolution is
memory-bound where a dense one is not), not the ONNX op type alone. Inside the
elementwise family, the operators that evaluate a transcendental function
(Sigmoid, Tanh, Exp, Erf, ... and Softmax over the last axis) have a class of
their own: on this x86 host onnxruntime's Sigmoid ran at 122 ns per thousand
elements in the caches against Relu's 48, and YOLOv8n's 58 SiLU Sigmoids were
predicted at a quarter of their time at the Relu rate. A Softmax over another
axis is its own class again: over axis 1 of YOLOv8's [1, 16, 4, 2100] box
distribution it took 1381 us against 49 us over the last axis of the same
elements (10.3 against 0.36 ns per element), 12% of that model's time.

A profile that gives no rate for a newer class takes its FALLBACK's.
"""
from __future__ import annotations

from splitnn.onnxsplit.model.graph import Graph, Node

DENSE_CONV = "dense_conv"
DEPTHWISE_CONV = "depthwise_conv"
MATMUL = "matmul"
ELEMENTWISE = "elementwise"
TRANSCENDENTAL = "transcendental"
STRIDED_SOFTMAX = "strided_softmax"
OP_CLASSES = (DENSE_CONV, DEPTHWISE_CONV, MATMUL, ELEMENTWISE, TRANSCENDENTAL, STRIDED_SOFTMAX)
# The class whose rate a profile without this one uses (profiles written before the class existed).
FALLBACK = {TRANSCENDENTAL: ELEMENTWISE, STRIDED_SOFTMAX: TRANSCENDENTAL}

TRANSCENDENTAL_OPS = frozenset({
    "Sigmoid", "Tanh", "Exp", "Log", "Erf", "Softplus", "Gelu", "Mish", "Elu", "Selu", "Celu", "Sin", "Cos", "Pow",
    "FastGelu", "BiasGelu", "QuickGelu",
})
SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax"})
# Matrix products, and the fused operators whose work is mostly matrix products: onnxruntime's int8 LSTM (its gates'
# products, in its GEMM kernels) and the attentions (the projections and QK^T, AV; the softmax between is a small part).
MATMUL_OPS = frozenset({
    "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
    "MatMulNBits", "DynamicQuantizeLSTM", "Attention", "MultiHeadAttention", "GroupQueryAttention",
})


def with_fallbacks(rates: dict[str, float]) -> dict[str, float]:
    """`rates` with every class of OP_CLASSES, a missing one at its fallback's rate."""
    full = dict(rates)
    for klass in OP_CLASSES:
        if klass not in full and klass in FALLBACK:
            full[klass] = full[FALLBACK[klass]] if FALLBACK[klass] in full else full[FALLBACK[FALLBACK[klass]]]
    return full


def _softmax_over_last_axis(node: Node, graph: Graph) -> bool:
    """Before opset 13 a Softmax flattens the axes from `axis` on into one row: always contiguous."""
    if graph.opset < 13:
        return True
    rank = len(graph.shape(node.inputs[0]))
    axis = int(node.attrs.get("axis", -1))
    return rank == 0 or axis % rank == rank - 1


def op_class(node: Node, graph: Graph) -> str:
    if node.op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        group = int(node.attrs.get("group", 1))
        channels = graph.shape(node.inputs[0])[1] if len(graph.shape(node.inputs[0])) > 1 else 1
        return DEPTHWISE_CONV if group > 1 and group == channels else DENSE_CONV
    if node.op_type in MATMUL_OPS:
        return MATMUL
    if node.op_type in TRANSCENDENTAL_OPS:
        return TRANSCENDENTAL
    if node.op_type in SOFTMAX_OPS:
        return TRANSCENDENTAL if _softmax_over_last_axis(node, graph) else STRIDED_SOFTMAX
    return ELEMENTWISE

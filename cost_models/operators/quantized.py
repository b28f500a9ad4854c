"""onnxruntime's quantized operators in the com.microsoft domain (QOperator form, as its quantizer writes them;
MatMulNBits, the 2- to 8-bit block-quantized weights of its weight-only quantizer).

Each counts as its float counterpart: an int8 multiply-accumulate or operation per element as one. QLinearConv,
ConvInteger and MatMulInteger are in the ONNX domain (conv and matmul modules); QuantizeLinear and
DequantizeLinear are elementwise.
"""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

MS = "com.microsoft"


@register("QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QuantizeLinear", "DequantizeLinear",
          "QLinearSoftmax", domain=MS)
def quantized_elementwise(node: Node, graph: Graph) -> int:
    """One operation per output element."""
    return math.prod(graph.shape(node.outputs[0]))


@register("QLinearGlobalAveragePool", domain=MS)
def quantized_global_pool(node: Node, graph: Graph) -> int:
    """Every input element is read once."""
    return math.prod(graph.shape(node.inputs[0]))


@register("QLinearAveragePool", domain=MS)
def quantized_window_pool(node: Node, graph: Graph) -> int:
    """Output elements * kernel size."""
    return math.prod(graph.shape(node.outputs[0])) * math.prod(node.attrs.get("kernel_shape", []))


@register("QLinearConcat", domain=MS)
def quantized_concat(node: Node, graph: Graph) -> int:
    """Moves data (and requantizes it): no multiply-accumulate."""
    return 0


@register("QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain=MS)
def quantized_matmul(node: Node, graph: Graph) -> int:
    """M*N*K: every output element is a K-long dot product (A is the first input)."""
    a = graph.shape(node.inputs[0])
    k = a[0] if node.attrs.get("transA", 0) else a[-1]
    return math.prod(graph.shape(node.outputs[0])) * k


@register("MatMulNBits", domain=MS)
def matmul_n_bits(node: Node, graph: Graph) -> int:
    """rows * N * K, A [..., K] and the weight's N and K from the attributes (B is packed, 2 to 8 bits per weight in
    blocks: its shape is not N x K). The weights' dequantization, once per block, is not counted."""
    a = graph.shape(node.inputs[0])
    return math.prod(a[:-1]) * int(node.attrs["N"]) * int(node.attrs["K"])

"""Operator classes: the groups of operators a device profile gives one compute rate each.

Classes follow how runtimes implement operators (a depthwise convolution is
memory-bound where a dense one is not), not the ONNX op type alone.
"""
from __future__ import annotations

from splitnn.onnxsplit.model.graph import Graph, Node

DENSE_CONV = "dense_conv"
DEPTHWISE_CONV = "depthwise_conv"
MATMUL = "matmul"
ELEMENTWISE = "elementwise"
OP_CLASSES = (DENSE_CONV, DEPTHWISE_CONV, MATMUL, ELEMENTWISE)


def op_class(node: Node, graph: Graph) -> str:
    if node.op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        group = int(node.attrs.get("group", 1))
        channels = graph.shape(node.inputs[0])[1] if len(graph.shape(node.inputs[0])) > 1 else 1
        return DEPTHWISE_CONV if group > 1 and group == channels else DENSE_CONV
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat",
                        "DynamicQuantizeMatMul"):
        return MATMUL
    return ELEMENTWISE

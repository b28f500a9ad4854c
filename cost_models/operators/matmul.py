"""Matrix products: M*N*K per (broadcast) batch."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register("Gemm")
def gemm(node: Node, graph: Graph) -> int:
    """M*N*K for Y = alpha*op(A)*op(B) + beta*C; K is A's column count after transA."""
    a = graph.shape(node.inputs[0])
    k = a[0] if node.attrs.get("transA", 0) else a[1]
    return math.prod(graph.shape(node.outputs[0])) * k


@register("MatMul", "MatMulInteger", "QLinearMatMul")
def matmul(node: Node, graph: Graph) -> int:
    """batch*M*N*K with numpy broadcasting: every output element is a K-long dot product."""
    a = graph.shape(node.inputs[0])
    k = a[-1] if a else 1
    return math.prod(graph.shape(node.outputs[0])) * k

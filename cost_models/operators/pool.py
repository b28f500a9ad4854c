"""Pooling: one operation per window element per output."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register("MaxPool", "AveragePool", "LpPool")
def window_pool(node: Node, graph: Graph) -> int:
    """Output elements * kernel size (one compare or add per window element)."""
    kernel = node.attrs.get("kernel_shape", [])
    return math.prod(graph.shape(node.outputs[0])) * math.prod(kernel)


@register("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(node: Node, graph: Graph) -> int:
    """Every input element is read once."""
    return math.prod(graph.shape(node.inputs[0]))

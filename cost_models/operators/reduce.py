"""Reductions and softmax."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register(
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin",
)
def reduce(node: Node, graph: Graph) -> int:
    """Every input element is accumulated once."""
    return math.prod(graph.shape(node.inputs[0]))


@register("Softmax", "LogSoftmax", "Hardmax")
def softmax(node: Node, graph: Graph) -> int:
    """Three operations per element: exponent, running sum, normalisation."""
    return 3 * math.prod(graph.shape(node.outputs[0]))

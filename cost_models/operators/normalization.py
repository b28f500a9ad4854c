"""Normalisations."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register("BatchNormalization")
def batch_norm(node: Node, graph: Graph) -> int:
    """One multiply-add per element: at inference y = x*scale' + shift', statistics folded."""
    return math.prod(graph.shape(node.outputs[0]))


@register("InstanceNormalization", "LayerNormalization", "GroupNormalization", "LpNormalization")
def computed_norm(node: Node, graph: Graph) -> int:
    """Three passes over the elements: mean, variance, then the scaled output."""
    return 3 * math.prod(graph.shape(node.inputs[0]))

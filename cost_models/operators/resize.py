"""Resampling."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

# Source elements blended per output element and per resized axis.
_TAPS_PER_AXIS = {"nearest": 1, "linear": 2, "cubic": 4}


@register("Resize", "Upsample")
def resize(node: Node, graph: Graph) -> int:
    """Output elements * taps: nearest reads 1 source element, linear 2 per resized
    axis (4 for bilinear), cubic 4 per resized axis (16 for bicubic)."""
    x = graph.shape(node.inputs[0])
    out = graph.shape(node.outputs[0])
    resized_axes = sum(1 for a, b in zip(x, out) if a != b)
    taps = _TAPS_PER_AXIS.get(str(node.attrs.get("mode", "nearest")), 1) ** resized_axes
    return math.prod(out) * taps

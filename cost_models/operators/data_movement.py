"""Operators that only move, view or create data: 0 MACs. They are registered so
that they are known (not reported as unknown); their cost is in the bytes they
output, which the memory and transfer models see."""
from __future__ import annotations

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

DATA_MOVEMENT = (
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
    "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Identity", "Shape", "Size",
    "Constant", "ConstantOfShape", "Expand", "Tile", "Pad", "Cast", "CastLike", "Dropout", "Range",
    "DepthToSpace", "SpaceToDepth", "OneHot", "NonZero", "TopK", "EyeLike", "Trilu",
)


@register(*DATA_MOVEMENT)
def no_arithmetic(node: Node, graph: Graph) -> int:
    """No arithmetic."""
    return 0

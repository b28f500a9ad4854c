"""Elementwise operators: one operation per output element (binary ops broadcast,
so the output shape already counts the broadcast)."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

UNARY = (
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Clip", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Softplus", "Softsign", "ThresholdedRelu", "Mish", "Exp", "Log", "Sqrt",
    "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos", "Not",
    "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear",
)
BINARY = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "Where",
)
VARIADIC = ("Sum", "Mean", "Max", "Min")


@register(*UNARY, *BINARY)
def elementwise(node: Node, graph: Graph) -> int:
    """One operation per output element."""
    return math.prod(graph.shape(node.outputs[0]))


@register(*VARIADIC)
def variadic(node: Node, graph: Graph) -> int:
    """n inputs combine with n-1 operations per output element (at least one)."""
    inputs = len([name for name in node.inputs if name])
    return max(inputs - 1, 1) * math.prod(graph.shape(node.outputs[0]))

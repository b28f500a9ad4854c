"""Attention and the fused transformer operators of onnxruntime's com.microsoft domain.

Attention (ONNX opset 23; Q, K and V given): 2*B*heads*Sq*Skv*d, the QK^T and the AV products.
com.microsoft Attention (the input, packed QKV weights [H_in, 3H]): the projection B*S*H_in*3H plus 2*B*S*S*H.
Einsum: the product of the sizes of every index letter (each output element a sum over the contracted ones).
The fused normalizations and activations count one operation per output element.
"""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

MS = "com.microsoft"


@register("Attention")
def attention(node: Node, graph: Graph) -> int:
    q, k = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    if len(q) == 4:  # [B, heads, S, d]
        return 2 * q[0] * q[1] * q[2] * k[2] * q[3]
    return 2 * q[0] * q[1] * k[1] * q[2]  # [B, S, hidden]


@register("Attention", domain=MS)
def packed_attention(node: Node, graph: Graph) -> int:
    x, w = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    batch, sequence, hidden_in = x
    hidden = w[1] // 3
    return batch * sequence * hidden_in * w[1] + 2 * batch * sequence * sequence * hidden


@register("Einsum")
def einsum(node: Node, graph: Graph) -> int:
    equation = node.attrs.get("equation", "")
    equation = equation.decode() if isinstance(equation, bytes) else str(equation)
    terms = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, name in zip(terms, node.inputs):
        shape = graph.shape(name)
        letters = [c for c in term if c.isalpha()]
        if "..." in term:  # the broadcast axes: as many leading axes as the shape has beyond the letters
            extra = len(shape) - len(letters)
            sizes.update({f"_{i}": shape[i] for i in range(extra)})
            shape = shape[extra:]
        sizes.update(zip(letters, shape))
    return math.prod(sizes.values())


@register("SkipLayerNormalization", "LayerNormalization", "SkipSimplifiedLayerNormalization",
          "SimplifiedLayerNormalization", "FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd",
          "EmbedLayerNormalization", domain=MS)
def fused_elementwise(node: Node, graph: Graph) -> int:
    """One operation per output element (of the first output)."""
    return math.prod(graph.shape(node.outputs[0]))

"""Attention and the fused transformer operators of onnxruntime's com.microsoft domain (its ContribOperators.md).

Attention (ONNX opset 23; Q, K and V given): 2*B*heads*Sq*Skv*d, the QK^T and the AV products.
The com.microsoft attentions count their products the same way, over the total key length T (the past's and the new
keys'; where past and present share one buffer, its length, an upper bound):
  Attention (the input, packed QKV weights [H_in, Hq + Hk + Hv]): the projection B*S*H_in*(Hq + Hk + Hv), then
    B*S*T*Hq for QK^T and B*S*T*Hv for AV.
  MultiHeadAttention (Q, K, V projected already): B*S*T*(Hq + Hv).
  GroupQueryAttention (num_heads query heads over kv_num_heads shared ones): every query head reads T keys and
    values, 2*B*S*T*num_heads*head_size; with do_rotary, the rotary embedding of Q and K on top.
  RotaryEmbedding: 2 per rotated element (x*cos -/+ y*sin), the rest of a head passes through.
Einsum: the product of the sizes of every index letter (each output element a sum over the contracted ones).
The fused normalizations and activations count as their parts: an add per element for each of the skip and the bias,
three passes for a layer normalization (mean, variance, the scaled output; as LayerNormalization in
normalization.py), two for a simplified (RMS) one, one for a Gelu.
"""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

MS = "com.microsoft"


def _given(node: Node, position: int) -> str | None:
    """The name of the node's input at `position`, None where it is left out."""
    return node.inputs[position] if position < len(node.inputs) and node.inputs[position] else None


def _output(node: Node, graph: Graph, position: int) -> tuple[int, ...] | None:
    """The shape of the node's output at `position`, None where it is not produced or has no known shape."""
    if position >= len(node.outputs) or not node.outputs[position] or node.outputs[position] not in graph.tensors:
        return None
    return graph.shape(node.outputs[position])


@register("Attention")
def attention(node: Node, graph: Graph) -> int:
    q, k = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    if len(q) == 4:  # [B, heads, S, d]
        return 2 * q[0] * q[1] * q[2] * k[2] * q[3]
    return 2 * q[0] * q[1] * k[1] * q[2]  # [B, S, hidden]


@register("Attention", domain=MS)
def packed_attention(node: Node, graph: Graph) -> int:
    """input [B, S, H_in], weights [H_in, Hq + Hk + Hv] (qkv_hidden_sizes, else three equal thirds), past
    [2, B, heads, P, head_size] (the shared buffer's P already holds the new keys)."""
    batch, sequence, hidden_in = graph.shape(node.inputs[0])
    w = graph.shape(node.inputs[1])
    sizes = [int(s) for s in node.attrs.get("qkv_hidden_sizes", [])] or [w[1] // 3] * 3
    total = sequence
    past = _given(node, 4)
    if past is not None:
        length = graph.shape(past)[3]
        total = length if int(node.attrs.get("past_present_share_buffer", 0)) else length + sequence
    return batch * sequence * hidden_in * w[1] + batch * sequence * total * (sizes[0] + sizes[2])


@register("MultiHeadAttention", domain=MS)
def multi_head_attention(node: Node, graph: Graph) -> int:
    """query [B, S, Hq] or packed QKV [B, S, heads, 3, head_size]; key [B, L, Hq], packed KV [B, L, heads, 2,
    head_size] or a past key [B, heads, L, head_size] (then no past_key); past_key [B, heads, P, head_size] adds P to
    L. The output [B, S, Hv] gives Hv."""
    q = graph.shape(node.inputs[0])
    batch, sequence = q[0], q[1]
    hidden_q = q[2] * q[4] if len(q) == 5 else q[2]
    key = _given(node, 1)
    if key is None:  # packed QKV: the keys are the sequence's own
        total = sequence
    else:
        k = graph.shape(key)
        total = k[2] if len(k) == 4 else k[1]
        past = _given(node, 6)
        if past is not None and len(k) != 4:
            total += graph.shape(past)[2]
    hidden_v = graph.shape(node.outputs[0])[-1]
    return batch * sequence * total * (hidden_q + hidden_v)


@register("GroupQueryAttention", domain=MS)
def group_query_attention(node: Node, graph: Graph) -> int:
    """query [B, S, num_heads*head_size] (or packed QKV, kv_num_heads*head_size twice more), output [B, S,
    num_heads*head_size]; T from present_key [B, kv_num_heads, T, head_size] (past + new keys, or the shared
    buffer's length), else past_key's length + S."""
    batch, sequence = graph.shape(node.inputs[0])[:2]
    hidden = graph.shape(node.outputs[0])[-1]
    heads = int(node.attrs.get("num_heads", 1)) or 1
    kv_heads = int(node.attrs.get("kv_num_heads", heads)) or heads
    head_size = hidden // heads
    present = _output(node, graph, 1)
    if present is not None:
        total = present[2]
    else:
        past = _given(node, 3)
        total = sequence + (graph.shape(past)[2] if past is not None else 0)
    products = 2 * batch * sequence * total * hidden
    rotary = 2 * batch * sequence * (heads + kv_heads) * head_size if int(node.attrs.get("do_rotary", 0)) else 0
    return products + rotary


# Where the cos cache is: the second input in the ONNX domain (opset 23), the third in com.microsoft's.
_COS_CACHE = {"": 1, "ai.onnx": 1, MS: 2}


@register("RotaryEmbedding", domain=MS)
@register("RotaryEmbedding")
def rotary_embedding(node: Node, graph: Graph) -> int:
    """2 per rotated element: input [B, S, hidden] or [B, heads, S, head_size]; rotary_embedding_dim (0: twice the
    cos cache's last axis, the whole head unless num_heads says otherwise) of each head_size."""
    x = graph.shape(node.inputs[0])
    elements = math.prod(x)
    rotary = int(node.attrs.get("rotary_embedding_dim", 0)) or 2 * graph.shape(node.inputs[_COS_CACHE[node.domain]])[-1]
    heads = int(node.attrs.get("num_heads", 0))
    head_size = x[-1] if len(x) == 4 else (x[-1] // heads if heads else rotary)
    return 2 * elements * min(rotary, head_size) // head_size


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


def _elements(node: Node, graph: Graph) -> int:
    return math.prod(graph.shape(node.outputs[0]))


@register("SkipLayerNormalization", domain=MS)
def skip_layer_norm(node: Node, graph: Graph) -> int:
    """input + skip (+ bias, the fifth input), then a layer normalization: (1 + bias + 3) per element."""
    return (1 + (_given(node, 4) is not None) + 3) * _elements(node, graph)


@register("SkipSimplifiedLayerNormalization", domain=MS)
def skip_simplified_layer_norm(node: Node, graph: Graph) -> int:
    """input + skip (+ bias, the fourth input), then an RMS normalization: (1 + bias + 2) per element."""
    return (1 + (_given(node, 3) is not None) + 2) * _elements(node, graph)


@register("LayerNormalization", domain=MS)
def ms_layer_norm(node: Node, graph: Graph) -> int:
    """As ONNX's LayerNormalization: three passes."""
    return 3 * _elements(node, graph)


@register("SimplifiedLayerNormalization", domain=MS)
def simplified_layer_norm(node: Node, graph: Graph) -> int:
    """RMS normalization: the sum of squares, then the scaled output."""
    return 2 * _elements(node, graph)


@register("FastGelu", domain=MS)
def fast_gelu(node: Node, graph: Graph) -> int:
    """The tanh approximation of Gelu, one per element, and the optional bias's add."""
    return (1 + (_given(node, 1) is not None)) * _elements(node, graph)


@register("BiasGelu", domain=MS)
def bias_gelu(node: Node, graph: Graph) -> int:
    """A + B, then Gelu: two per element."""
    return 2 * _elements(node, graph)


@register("Gelu", "QuickGelu", "BiasAdd", "EmbedLayerNormalization", domain=MS)
def fused_elementwise(node: Node, graph: Graph) -> int:
    """One operation per output element (of the first output)."""
    return _elements(node, graph)

"""Recurrent layers (RNN, GRU, LSTM, and onnxruntime's int8 DynamicQuantizeLSTM): per time step and batch row, the
input and recurrent matrix products of every gate in every direction. The gates' elementwise work is not counted (it
is small beside the products)."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node

MS = "com.microsoft"


@register("RNN", "GRU", "LSTM")
def recurrent(node: Node, graph: Graph) -> int:
    """seq * batch * (|W| + |R|), W [directions, gates*hidden, input] and R [directions, gates*hidden, hidden]."""
    x = graph.shape(node.inputs[0])
    seq, batch = (x[1], x[0]) if int(node.attrs.get("layout", 0)) else (x[0], x[1])
    return seq * batch * (math.prod(graph.shape(node.inputs[1])) + math.prod(graph.shape(node.inputs[2])))


@register("DynamicQuantizeLSTM", domain=MS)
def dynamic_quantize_lstm(node: Node, graph: Graph) -> int:
    """As LSTM, one int8 multiply-accumulate per weight per time step and batch row: seq * batch * (|W| + |R|), with
    X [seq, batch, input], W [directions, input, 4*hidden] and R [directions, hidden, 4*hidden] (transposed against
    LSTM's, the same elements; no layout attribute)."""
    seq, batch = graph.shape(node.inputs[0])[:2]
    return seq * batch * (math.prod(graph.shape(node.inputs[1])) + math.prod(graph.shape(node.inputs[2])))

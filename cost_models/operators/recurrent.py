"""Recurrent layers (RNN, GRU, LSTM): per time step and batch row, the input and recurrent matrix products of
every gate in every direction. The gates' elementwise work is not counted (it is small beside the products)."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register("RNN", "GRU", "LSTM")
def recurrent(node: Node, graph: Graph) -> int:
    """seq * batch * (|W| + |R|), W [directions, gates*hidden, input] and R [directions, gates*hidden, hidden]."""
    x = graph.shape(node.inputs[0])
    seq, batch = (x[1], x[0]) if int(node.attrs.get("layout", 0)) else (x[0], x[1])
    return seq * batch * (math.prod(graph.shape(node.inputs[1])) + math.prod(graph.shape(node.inputs[2])))

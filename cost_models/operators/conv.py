"""Convolutions. Strides, padding, auto_pad and dilation act through the output
shape, which shape inference has already resolved; groups act through the weight
shape, whose second axis is Cin/group."""
from __future__ import annotations

import math

from splitnn.cost_models.registry import register
from splitnn.onnxsplit.model.graph import Graph, Node


@register("Conv")
def conv(node: Node, graph: Graph) -> int:
    """N*Cout*Hout*Wout * (Cin/group)*kh*kw: every output element is one dot product
    over its receptive field (weight shape [Cout, Cin/group, kh, kw, ...])."""
    out = graph.shape(node.outputs[0])
    weight = graph.shape(node.inputs[1])
    return math.prod(out) * math.prod(weight[1:])


# Where each convolution keeps its weight: Conv and ConvInteger second, QLinearConv fourth (after the input's
# scale and zero point), as onnxruntime's quantizer writes them.
WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}


@register("ConvInteger", "QLinearConv")
def quantized_conv(node: Node, graph: Graph) -> int:
    """As Conv: one int8 multiply-accumulate per weight element per output element."""
    out = graph.shape(node.outputs[0])
    weight = graph.shape(node.inputs[WEIGHT_INPUT[node.op_type]])
    return math.prod(out) * math.prod(weight[1:])


@register("ConvTranspose")
def conv_transpose(node: Node, graph: Graph) -> int:
    """N*Cin*Hin*Win * (Cout/group)*kh*kw: every input element is scattered through the
    kernel (weight shape [Cin, Cout/group, kh, kw, ...])."""
    x = graph.shape(node.inputs[0])
    weight = graph.shape(node.inputs[1])
    return math.prod(x) * math.prod(weight[1:])

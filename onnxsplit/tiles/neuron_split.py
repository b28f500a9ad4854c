"""Fully connected layers too big for one node, split by output neurons across nodes.

A Gemm (Y = alpha * A' B' + beta * C) or a MatMul by a constant 2-D weight
computes each output neuron (a column of Y) from its own column of B' (and
element of C). Slice i takes neurons [n0, n1): its own columns of the weight
(rows when transB=1) and of the bias, so a node holds only its slice of the
weights; the client concatenates the slices' outputs on the last axis.

A layer is split when its weights exceed a node's usable RAM, into as many
slices as needed (at least 2, at most the number of nodes; more is refused),
or, given its predicted time, when one slice per node run at once plus a round
trip is predicted faster than the whole layer on the client (a fully connected
layer at batch 1 reads every weight once: it is bound by memory bandwidth, and
each node brings its own). The rest of the remainder runs on the client in
segments between split layers: `remainder_steps` gives the order.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from splitnn.cost_models.registry import NodeCost
from splitnn.onnxsplit.artifacts.parts import part_boundary
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph, Node
from splitnn.onnxsplit.model.weight_source import WeightSource
from splitnn.onnxsplit.tiles.geometry import split_range


@dataclass(frozen=True)
class NeuronSplit:
    index: int  # node index in the Graph
    name: str
    op_type: str
    input: str  # the activation read (A)
    output: str
    weight: str  # initializer name of B / W
    bias: str | None  # initializer name of C, sliced along with the weight (Gemm only)
    neurons: int
    ranges: tuple[tuple[int, int], ...]
    param_bytes: int
    why: str = "memory"  # "memory": too big for a node; "time": predicted faster across the nodes

    def to_dict(self) -> dict[str, Any]:
        per_neuron = self.param_bytes / self.neurons
        return {"node": self.name, "op_type": self.op_type, "input": self.input, "output": self.output,
                "param_bytes": self.param_bytes, "why": self.why,
                "slices": [{"neurons": [a, b], "bytes": round(per_neuron * (b - a))} for a, b in self.ranges]}


def _weight_layout(node: Node, graph: Graph) -> tuple[str, str | None, int, bool] | None:
    """(weight, bias, neurons, neurons_are_rows) when the node can be split by neurons, else None."""
    if node.op_type == "Gemm":
        if len(node.inputs) < 2 or node.inputs[1] not in graph.initializers:
            return None
        trans_b = bool(node.attrs.get("transB", 0))
        shape = graph.initializers[node.inputs[1]].shape
        neurons = shape[0] if trans_b else shape[1]
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if bias is not None:
            if bias not in graph.initializers:
                return None
            bias_shape = graph.initializers[bias].shape
            if not bias_shape or bias_shape[-1] != neurons:  # a scalar or per-row bias: keep the layer whole
                return None
        return node.inputs[1], bias, neurons, trans_b
    if node.op_type == "MatMul" and len(node.inputs) == 2 and node.inputs[1] in graph.initializers:
        shape = graph.initializers[node.inputs[1]].shape
        if len(shape) == 2:
            return node.inputs[1], None, shape[1], False
    return None


def plan_neuron_splits(graph: Graph, costs: list[NodeCost], indices: tuple[int, ...], nodes: int,
                       usable_bytes: int, seconds_of: Callable[[int], float] | None = None,
                       round_trip_s: float = 0.0) -> list[NeuronSplit]:
    """The layers among `indices` whose weights exceed `usable_bytes`, each split into just enough slices; with
    `seconds_of` (a layer's predicted time on one node), also every other layer that can be split and is
    predicted faster as one slice per node plus `round_trip_s`."""
    splits = []
    for index in indices:
        node = graph.nodes[index]
        param_bytes = costs[index].param_bytes
        if param_bytes <= usable_bytes:
            layout = _weight_layout(node, graph) if seconds_of is not None and nodes > 1 else None
            if (layout is not None and seconds_of is not None and layout[2] >= nodes
                    and seconds_of(index) * (1 - 1 / nodes) > round_trip_s):
                splits.append(NeuronSplit(index, node.name, node.op_type, node.inputs[0], node.outputs[0], layout[0],
                                          layout[1], layout[2], tuple(split_range(layout[2], nodes)), param_bytes, "time"))
            continue
        layout = _weight_layout(node, graph)
        if layout is None:
            raise SplitnnError(f"{node.name} ({node.op_type}) holds {param_bytes:,} B of weights, more than a node's "
                               f"{usable_bytes:,} B usable, and cannot be split by neurons: use a node profile with more RAM")
        weight, bias, neurons, _ = layout
        count = max(2, math.ceil(param_bytes / usable_bytes))
        if count > nodes:
            raise SplitnnError(f"{node.name} holds {param_bytes:,} B of weights: split by neurons it needs {count} nodes "
                               f"of {usable_bytes:,} B usable, and there are {nodes}; add --nodes or use bigger nodes")
        splits.append(NeuronSplit(index, node.name, node.op_type, node.inputs[0], node.outputs[0], weight, bias, neurons,
                                  tuple(split_range(neurons, count)), param_bytes))
    return splits


def slice_model(graph: Graph, weights: WeightSource, split: NeuronSplit, neurons: tuple[int, int],
                opset_imports: list[onnx.OperatorSetIdProto]) -> onnx.ModelProto:
    """A standalone model computing neurons [n0, n1) of the split layer, with only its slice of the weights."""
    node = graph.nodes[split.index]
    layout = _weight_layout(node, graph)
    assert layout is not None
    _, _, _, rows = layout
    n0, n1 = neurons
    info = graph.initializers[split.weight]
    full = np.frombuffer(weights.read(split.weight), dtype=np.dtype(info.dtype)).reshape(info.shape)
    sliced = full[n0:n1] if rows else full[:, n0:n1]
    initializers = [numpy_helper.from_array(np.ascontiguousarray(sliced), f"{split.weight}.slice")]
    inputs = [split.input, f"{split.weight}.slice"]
    if split.bias is not None:
        bias_info = graph.initializers[split.bias]
        bias = np.frombuffer(weights.read(split.bias), dtype=np.dtype(bias_info.dtype)).reshape(bias_info.shape)
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(bias[..., n0:n1]), f"{split.bias}.slice"))
        inputs.append(f"{split.bias}.slice")
    attrs = {k: v for k, v in node.attrs.items()} if node.op_type == "Gemm" else {}
    layer = helper.make_node(node.op_type, inputs, [split.output], name=f"{node.name}.slice", **attrs)
    in_info = graph.info(split.input)
    out_shape = list(graph.info(split.output).shape)
    out_shape[-1] = n1 - n0
    dtype = helper.np_dtype_to_tensor_dtype(np.dtype(in_info.dtype))
    model_graph = helper.make_graph([layer], f"{node.name}_slice", [helper.make_tensor_value_info(split.input, dtype, in_info.shape)],
                                    [helper.make_tensor_value_info(split.output, dtype, out_shape)], initializers)
    return helper.make_model(model_graph, opset_imports=opset_imports)


@dataclass(frozen=True)
class Segment:
    """Consecutive remainder nodes run on the client."""

    indices: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def remainder_steps(graph: Graph, indices: tuple[int, ...], splits: list[NeuronSplit]) -> list[Segment | NeuronSplit]:
    """The remainder in order: segments for the client, split layers for the nodes, one after the other."""
    by_index = {s.index: s for s in splits}
    groups: list[list[int] | NeuronSplit] = []
    for index in indices:
        if index in by_index:
            groups.append(by_index[index])
        elif groups and isinstance(groups[-1], list):
            groups[-1].append(index)
        else:
            groups.append([index])
    steps: list[Segment | NeuronSplit] = []
    for position, group in enumerate(groups):
        if isinstance(group, NeuronSplit):
            steps.append(group)
            continue
        later: set[str] = set()
        for other in groups[position + 1:]:
            later_indices = [other.index] if isinstance(other, NeuronSplit) else other
            later.update(n for i in later_indices for n in graph.nodes[i].all_inputs)
        inputs, outputs = part_boundary(graph, group, later)
        steps.append(Segment(tuple(group), inputs, outputs))
    return steps

"""The loaded model as plain data: nodes in topological order, every tensor's shape.

`Graph` is what every later step reads. It holds no weight bytes: initializers
are described by name, shape, dtype, size and where their bytes live.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from splitnn.onnxsplit.core.errors import SplitnnError

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
# Operators whose output is fixed by the shapes of their inputs alone (fixed when the model is loaded).
SHAPE_OPS = frozenset({"Shape", "Size"})
# Operators that are never static, whatever their inputs: their output changes from run to run.
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})


@dataclass(frozen=True)
class TensorInfo:
    """A tensor with a fully static shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class InitializerInfo:
    """A stored weight: its metadata and where its bytes are, never the bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    location: str  # "inline" (inside the .onnx file) or "external"
    file: str | None = None  # external data file, relative to the model's folder
    offset: int | None = None  # byte offset in the .onnx file (inline) or the data file; None: kept in the skeleton
    length: int | None = None
    raw: bool = True  # inline payload stored as raw_data (else in typed fields, to be decoded)
    message_offset: int | None = None  # the whole inline TensorProto, for typed-field payloads
    message_length: int | None = None


@dataclass(frozen=True)
class Node:
    """One operator of the graph, with its position in topological order."""

    index: int  # position in topological order
    proto_index: int  # position in the ModelProto's node list
    name: str  # the model's node name; "<op_type>_<index>" where the model left it empty
    op_type: str
    domain: str
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    # Outer-scope tensors read inside If/Loop/Scan bodies: real inputs of the node.
    implicit_inputs: tuple[str, ...] = ()
    # Computed from initializers and constants alone (or a Shape/Size, whose value the fixed shapes give):
    # its outputs are constants, not activations.
    is_static: bool = False

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Every tensor the node reads, omitted optional inputs left out."""
        return tuple(name for name in self.inputs if name) + self.implicit_inputs

    @property
    def is_constant(self) -> bool:
        """A Constant node or a static one: its outputs are fixed values that either side can hold.

        Such a node takes no position in the order of cuts, its outputs never cross a cut, and each part
        gets a copy of the ones it reads (Shape and Size folded to their values)."""
        return self.is_static or (self.op_type == "Constant" and self.domain in ("", "ai.onnx"))


@dataclass
class Graph:
    """A model with every tensor's shape and dtype resolved.

    `model` is a skeleton ModelProto (large weights without their bytes) with
    the input shapes as fixed and value_info filled by shape inference.
    """

    model: onnx.ModelProto
    path: Path | None
    nodes: tuple[Node, ...]
    tensors: dict[str, TensorInfo]  # activations, graph inputs and outputs, Constant outputs
    initializers: dict[str, InitializerInfo]
    inputs: tuple[str, ...]  # real inputs, initializers excluded
    outputs: tuple[str, ...]
    constant_values: dict[str, int]  # tensor -> bytes, for initializers and Constant node outputs
    producer: dict[str, int] = field(default_factory=dict)  # tensor -> node index
    consumers: dict[str, tuple[int, ...]] = field(default_factory=dict)  # tensor -> node indices
    shape_notes: tuple[str, ...] = ()  # how open shapes were resolved, for the report

    @property
    def model_file(self) -> Path:
        """The .onnx file the graph was loaded from, whose weights are read in place (refused without one)."""
        if self.path is None:
            raise SplitnnError("the graph has no model file to read its weights from")
        return self.path

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise SplitnnError(f"tensor '{name}' has no known shape") from None

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.initializers:
            return self.initializers[name].shape
        return self.info(name).shape

    def is_constant(self, name: str) -> bool:
        return name in self.constant_values

    @property
    def opset(self) -> int:
        for entry in self.model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return entry.version
        return 0


def _subgraph_free_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from the enclosing scope."""
    defined = {vi.name for vi in graph.input} | {init.name for init in graph.initializer}
    free: set[str] = set()
    for node in graph.node:
        for name in node.input:
            if name and name not in defined:
                free.add(name)
        for attr in node.attribute:
            for sub in _attr_subgraphs(attr):
                free |= _subgraph_free_names(sub) - defined
        defined.update(node.output)
    return free


def _attr_subgraphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def _plain_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue  # subgraphs stay in the ModelProto; cost handlers never need them
        if attr.type == onnx.AttributeProto.TENSOR:
            attrs[attr.name] = attr.t  # keep the proto; decoding a big value is left to who needs it
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
        attrs[attr.name] = value
    return attrs


def topological_order(graph: onnx.GraphProto, available: set[str]) -> list[int]:
    """Indices of graph.node in a topological order, file order kept where it is valid.

    `available` holds the names known before any node runs (inputs, initializers).
    Raises SplitnnError when a node reads a tensor nothing produces, or on a cycle.
    """
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = i
    waiting_on = [0] * len(graph.node)
    dependents: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        reads = {name for name in node.input if name}
        for attr in node.attribute:
            for sub in _attr_subgraphs(attr):
                reads |= _subgraph_free_names(sub)
        for name in reads:
            if name in producer:
                waiting_on[i] += 1
                dependents.setdefault(producer[name], []).append(i)
            elif name not in available:
                label = node.name or f"{node.op_type} #{i}"
                raise SplitnnError(
                    f"node '{label}' reads tensor '{name}' that no node, input or initializer provides: the model is malformed; re-export it"
                )
    ready = [i for i, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents.get(i, ()):
            waiting_on[j] -= 1
            if waiting_on[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        raise SplitnnError("the model's graph has a cycle: it is not a valid ONNX model; re-export it")
    return order


def np_dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        raise SplitnnError(f"tensor element type {elem_type} is not supported: convert the model to standard types") from None


def build_graph(
    model: onnx.ModelProto,
    path: Path | None,
    shapes: Mapping[str, tuple[tuple[int, ...], str]],
    initializers: dict[str, InitializerInfo],
    shape_notes: tuple[str, ...] = (),
) -> Graph:
    """Assemble a Graph from a skeleton model and the resolved shape of every tensor.

    `shapes` maps tensor names to (shape, dtype name); it must cover every
    node output and graph input and output.
    """
    onnx_graph = model.graph
    init_names = set(initializers)
    inputs = tuple(vi.name for vi in onnx_graph.input if vi.name not in init_names)
    outputs = tuple(vi.name for vi in onnx_graph.output)
    order = topological_order(onnx_graph, set(inputs) | init_names)

    nodes = _static_marked(_nodes(onnx_graph, order), init_names)
    tensors = {name: TensorInfo(name, shape, dtype) for name, (shape, dtype) in shapes.items()}
    constant_values = {name: info.nbytes for name, info in initializers.items()}
    for node in nodes:
        if node.is_constant:
            for out in node.outputs:
                constant_values[out] = tensors[out].nbytes if out in tensors else 0

    producer, consumers = _wiring(nodes)
    missing = [name for node in nodes for name in node.outputs if name and name not in tensors]
    missing += [name for name in inputs + outputs if name not in tensors and name not in init_names]
    if missing:
        raise SplitnnError(f"tensor '{missing[0]}' (and {len(missing) - 1} more) has no static shape after inference")

    return Graph(
        model=model,
        path=path,
        nodes=tuple(nodes),
        tensors=tensors,
        initializers=initializers,
        inputs=inputs,
        outputs=outputs,
        constant_values=constant_values,
        producer=producer,
        consumers=consumers,
        shape_notes=shape_notes,
    )


def _nodes(onnx_graph: onnx.GraphProto, order: list[int]) -> list[Node]:
    """The graph's nodes in topological `order`, each with a unique name and its subgraphs' free inputs."""
    nodes: list[Node] = []
    used_names: set[str] = set()
    for index, original in enumerate(order):
        proto = onnx_graph.node[original]
        name = proto.name or f"{proto.op_type}_{index}"
        while name in used_names:  # duplicate names happen in exported models
            name = f"{name}_{index}"
        used_names.add(name)
        implicit: tuple[str, ...] = ()
        if proto.op_type in CONTROL_FLOW_OPS or any(_attr_subgraphs(a) for a in proto.attribute):
            free: set[str] = set()
            for attr in proto.attribute:
                for sub in _attr_subgraphs(attr):
                    free |= _subgraph_free_names(sub)
            implicit = tuple(sorted(free - set(proto.input)))
        nodes.append(Node(index=index, proto_index=original, name=name, op_type=proto.op_type, domain=proto.domain,
                          inputs=tuple(proto.input), outputs=tuple(proto.output), attrs=_plain_attrs(proto),
                          implicit_inputs=implicit))
    return nodes


def _wiring(nodes: list[Node]) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """Each tensor's producing node and its consuming nodes (in order, each once)."""
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for node in nodes:
        for out in node.outputs:
            if out:
                producer[out] = node.index
        for name in dict.fromkeys(node.all_inputs):
            consumers.setdefault(name, []).append(node.index)
    return producer, {name: tuple(ids) for name, ids in consumers.items()}


def _static_marked(nodes: list[Node], initializers: set[str]) -> list[Node]:
    """`nodes` with `is_static` set on those computed from initializers and constants alone (in one pass over
    the topological order), and on Shape/Size nodes. Random and control-flow nodes and other domains never are."""
    static_tensors = set(initializers)
    marked = []
    for node in nodes:
        ordinary = node.domain in ("", "ai.onnx") and node.op_type not in RANDOM_OPS and not node.implicit_inputs
        static = ordinary and node.op_type not in CONTROL_FLOW_OPS and (
            node.op_type == "Constant" or node.op_type in SHAPE_OPS or all(n in static_tensors for n in node.all_inputs))
        if static:
            static_tensors.update(out for out in node.outputs if out)
            node = replace(node, is_static=True)
        marked.append(node)
    return marked

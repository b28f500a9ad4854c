"""Cut a model into its device part and server part, and chain them back.

Written by hand rather than with `onnx.utils.extract_model`, which walks back
from the requested outputs and so cannot take a part that must also forward
tensors, loads all external data, and stops at 2 GB. Here a part is simply the
nodes on one side of a cut, the Constant nodes they read, their initializers
and the shapes of everything in between (from the Graph's value_info).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from splitnn.onnxsplit.analysis.cuts import Cut, device_side, placeable_indices
from splitnn.onnxsplit.artifacts.chain import PartStep, outputs_of, run_steps
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.graph import SHAPE_OPS, Graph, Node


@dataclass(frozen=True)
class Part:
    """One side of a cut: a standalone model (None when the side runs no node)."""

    model: onnx.ModelProto | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def side_indices(graph: Graph, cut: Cut) -> tuple[list[int], list[int]]:
    """Non-Constant node indices on the device and on the server, in topological order."""
    device = device_side(graph, cut)
    inside = set(device)
    return device, [i for i in placeable_indices(graph) if i not in inside]


def part_boundary(graph: Graph, indices: Sequence[int], needed_later: Iterable[str],
                  first_inputs: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a part running graph nodes `indices` reads from outside it and what it returns.

    Inputs: the tensors its nodes read that they do not produce and that are not constants, `first_inputs`
    first, then in the order first read. Outputs: the tensors it produces that `needed_later` (what later
    parts read) or the model's outputs ask for, in the order produced.
    """
    produced = dict.fromkeys(o for i in indices for o in graph.nodes[i].outputs if o)
    reads = [n for i in indices for n in graph.nodes[i].all_inputs if n]
    inputs = tuple(dict.fromkeys([*first_inputs, *(n for n in reads if n not in produced and not graph.is_constant(n))]))
    wanted = set(needed_later) | set(graph.outputs)
    return inputs, tuple(n for n in produced if n in wanted)


def value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    """Tensor `name`'s dtype and shape as the graph knows them, for a model's inputs, outputs or value_info."""
    info = graph.info(name)
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype)), info.shape)


def build_part(
    graph: Graph,
    source: onnx.ModelProto,
    indices: list[int],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    name: str,
) -> onnx.ModelProto | None:
    """A standalone model running graph nodes `indices`; `source` supplies node protos and weights.

    `source` must be the model the Graph was loaded from, with whatever weights
    the part should carry (loaded, or still referring to external data).
    """
    if not indices:
        return None
    chosen = [graph.nodes[i] for i in sorted(set(indices) | _static_behind(graph, indices))]
    folded = {node.index for node in chosen if node.is_static and node.op_type in SHAPE_OPS}
    protos = [_folded(graph, node) if node.index in folded else source.graph.node[node.proto_index] for node in chosen]
    reads = {n for node in chosen if node.index not in folded for n in node.all_inputs}  # subgraphs' reads too
    initializers = [t for t in source.graph.initializer if t.name in reads]
    produced = {out for node in chosen for out in node.outputs if out}
    inner = [n for n in dict.fromkeys(produced) if n not in outputs and n in graph.tensors]
    part_graph = helper.make_graph(
        protos,
        name,
        [value_info(graph, n) for n in inputs],
        [value_info(graph, n) for n in outputs],
        initializer=initializers,
        value_info=[value_info(graph, n) for n in inner],
    )
    model = helper.make_model(part_graph, opset_imports=list(source.opset_import), ir_version=source.ir_version)
    model.functions.extend(source.functions)
    return model


def _static_behind(graph: Graph, indices: Sequence[int]) -> set[int]:
    """The static nodes whose values nodes `indices` read, directly or through other static nodes."""
    found: set[int] = set()
    pending = [n for i in indices for n in graph.nodes[i].all_inputs]
    while pending:
        producer = graph.producer.get(pending.pop())
        if producer is None or producer in found or not graph.nodes[producer].is_constant:
            continue
        found.add(producer)
        node = graph.nodes[producer]
        if node.op_type not in SHAPE_OPS:  # a folded Shape/Size reads nothing
            pending.extend(node.all_inputs)
    return found


def _folded(graph: Graph, node: Node) -> onnx.NodeProto:
    """A Shape or Size node as a Constant node of the same output and name (the value the fixed shapes give)."""
    shape = np.array(graph.shape(node.inputs[0]), dtype=np.int64)
    if node.op_type == "Size":
        value = np.array(shape.prod(), dtype=np.int64)
    else:
        start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
        value = shape[start:] if end is None else shape[start:int(end)]
    return helper.make_node("Constant", [], [node.outputs[0]], name=node.name,
                            value=numpy_helper.from_array(value, node.outputs[0]))


def extract_parts(graph: Graph, source: onnx.ModelProto, cut: Cut) -> tuple[Part, Part]:
    """The device part and the server part at `cut`.

    Device part: reads the graph inputs its nodes need, returns the crossing
    tensors it computes and the graph outputs it computes. Server part: reads
    exactly the crossing tensors, returns the remaining graph outputs. A
    crossing tensor that is a raw graph input is forwarded by the device as is.
    """
    device_idx, server_idx = side_indices(graph, cut)
    device_set = set(device_idx) | {n.index for n in graph.nodes if n.is_constant}
    device_reads, made_on_device = part_boundary(graph, device_idx, cut.tensors)
    device_inputs = tuple(n for n in graph.inputs if n in device_reads)
    device_outputs = tuple(
        dict.fromkeys([t for t in cut.tensors if t in made_on_device] + [o for o in graph.outputs if o in made_on_device])
    )
    server_outputs = tuple(
        o for o in graph.outputs if o in graph.producer and graph.producer[o] not in device_set
    )
    device = Part(build_part(graph, source, device_idx, device_inputs, device_outputs, "device"), device_inputs, device_outputs)
    server = Part(build_part(graph, source, server_idx, cut.tensors, server_outputs, "server"), cut.tensors, server_outputs)
    return device, server


def run_parts(device: Part, server: Part, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run device then server (models in memory) with onnxruntime, passing the crossing tensors; return every
    output of the parts."""
    parts = {side: part for side, part in (("device", device), ("server", server)) if part.model is not None}
    models = {side: part.model for side, part in parts.items() if part.model is not None}  # the same, by side
    steps = [PartStep(side, part.inputs, part.outputs) for side, part in parts.items()]
    # Each part runs once: basic optimizations, no weight repacking, one thread (session set-up is most of the cost).
    pool = run_steps(steps, dict(feeds), lambda side: create_session(models[side], level="basic", prepack=False,
                                                                  threads=1, spin=False))
    return outputs_of(pool, [name for part in parts.values() for name in part.outputs])

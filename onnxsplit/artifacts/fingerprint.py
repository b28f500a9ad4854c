"""A fingerprint of a graph's structure (nodes, wiring, weight shapes), computed without reading weights.

plan.json stores it at partition time; update-weights and the tile runtime
compare against it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from splitnn.onnxsplit.model.skeleton import read_skeleton


def graph_fingerprint(model: onnx.ModelProto) -> str:
    """Hash of everything but weight values: nodes, wiring, attributes, weight names/shapes/dtypes."""
    digest = hashlib.sha256()
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        digest.update(f"io:{vi.name}\n".encode())
    for tensor in graph.initializer:
        digest.update(f"init:{tensor.name}:{tensor.data_type}:{list(tensor.dims)}\n".encode())
    for node in graph.node:
        digest.update(f"node:{node.op_type}:{node.domain}:{list(node.input)}:{list(node.output)}\n".encode())
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                digest.update(f"attr:{attr.name}:{attr.t.data_type}:{list(attr.t.dims)}\n".encode())
            elif attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                digest.update(f"attr:{attr.name}:subgraph\n".encode())
            else:
                digest.update(f"attr:{attr.name}:{onnx.helper.get_attribute_value(attr)!r}\n".encode())
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    skeleton, _ = read_skeleton(path)
    return graph_fingerprint(skeleton)

"""A client step computed from the workers' sums instead of the stitched map (the workers' hand-off).

A squeeze-and-excitation step starts with a mean of a whole map over its rows
and columns (GlobalAveragePool, or ReduceMean over H and W). Each tile's cell
of the map is summed where it lies, on its worker; the client adds the sums
up, divides by the map's area, and runs the rest of the step on that 1x1
mean. The map itself never travels. `pooled_step` rewrites the step's graph
for that: each mean node is removed and its output becomes an input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class PooledStep:
    """A client step's graph fed with means instead of maps."""

    model: bytes  # the step without its mean nodes, weights inline
    means: dict[str, tuple[str, ...]]  # each map the step read: the inputs that now take its mean


def pooled_step(path: Path, maps: tuple[str, ...]) -> PooledStep | None:
    """The step at `path` (external weights beside it) fed with the means of `maps` (NCHW) instead; None where
    it reads one of them other than through a mean over rows and columns."""
    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    readers = [node for node in graph.node if any(name in maps for name in node.input)]
    if not readers or not all(_is_spatial_mean(node, constants) for node in readers):
        return None
    means: dict[str, list[str]] = {}
    for node in readers:
        means.setdefault(node.input[0], []).append(node.output[0])
    kept_inputs = [value for value in graph.input if value.name not in maps]
    shapes = {value.name: value for value in graph.input}
    added = []
    for name, outputs in means.items():
        tensor_type = shapes[name].type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim]
        added += [helper.make_tensor_value_info(output, tensor_type.elem_type, [dims[0], dims[1], 1, 1])
                  for output in outputs]
    nodes = [node for node in graph.node if node not in readers]
    pooled = helper.make_graph(nodes, graph.name + "_pooled", kept_inputs + added, list(graph.output),
                               list(graph.initializer))
    rewritten = helper.make_model(pooled, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return PooledStep(rewritten.SerializeToString(), {name: tuple(outputs) for name, outputs in means.items()})


def _is_spatial_mean(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> bool:
    """A mean of its first input over axes 2 and 3 (of four), keeping them."""
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type != "ReduceMean" or len(node.input) > 2:
        return False
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("keepdims", 1) != 1:
        return False
    axes = attributes.get("axes")
    if axes is None and len(node.input) == 2 and node.input[1] in constants:
        axes = numpy_helper.to_array(constants[node.input[1]]).tolist()
    return axes is not None and {a % 4 for a in axes} == {2, 3}


def mean_of(sums: list[np.ndarray], area: int, dtype: np.dtype) -> np.ndarray:
    """The mean over a map's rows and columns from its cells' sums (each of shape (N, C)), as (N, C, 1, 1)."""
    total = np.sum(sums, axis=0)
    return (total / area).astype(dtype)[:, :, None, None]

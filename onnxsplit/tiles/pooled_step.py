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


SPATIAL_AXES = {"NCHW": {2, 3}, "NHWC": {1, 2}}  # the rows and columns of a map in each layout


@dataclass(frozen=True)
class PooledStep:
    """A client step's graph fed with means instead of maps."""

    model: bytes  # the step without its mean nodes, weights inline
    means: dict[str, tuple[str, ...]]  # each map the step read: the inputs that now take its mean
    dtypes: dict[str, np.dtype]  # each map's element type (its mean's)


def pooled_step(path: Path, maps: dict[str, str]) -> PooledStep | None:
    """The step at `path` (external weights beside it) fed with the means of `maps` (by name, in their layout:
    NCHW or NHWC) instead; None where it reads one of them other than through a mean over rows and columns."""
    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    readers = [node for node in graph.node if any(name in maps for name in node.input)]
    if not readers or not all(node.input[0] in maps and _is_spatial_mean(node, constants, maps[node.input[0]])
                              and sum(name in maps for name in node.input) == 1 for node in readers):
        return None
    means: dict[str, list[str]] = {}
    for node in readers:
        means.setdefault(node.input[0], []).append(node.output[0])
    kept_inputs = [value for value in graph.input if value.name not in maps]
    shapes = {value.name: value for value in graph.input}
    added, dtypes = [], {}
    for name, outputs in means.items():
        tensor_type = shapes[name].type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim]
        kept = [d if axis not in SPATIAL_AXES[maps[name]] else 1 for axis, d in enumerate(dims)]
        added += [helper.make_tensor_value_info(output, tensor_type.elem_type, kept) for output in outputs]
        dtypes[name] = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    nodes = [node for node in graph.node if node not in readers]
    pooled = helper.make_graph(nodes, graph.name + "_pooled", kept_inputs + added, list(graph.output),
                               list(graph.initializer))
    rewritten = helper.make_model(pooled, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return PooledStep(rewritten.SerializeToString(), {name: tuple(outputs) for name, outputs in means.items()},
                      dtypes)


def _is_spatial_mean(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto], layout: str) -> bool:
    """A mean of its first input (a 4-d map in `layout`) over its rows and columns, keeping them."""
    if node.op_type == "GlobalAveragePool":
        return layout == "NCHW"
    if node.op_type != "ReduceMean" or len(node.input) > 2:
        return False
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("keepdims", 1) != 1:
        return False
    axes = attributes.get("axes")
    if axes is None and len(node.input) == 2 and node.input[1] in constants:
        axes = numpy_helper.to_array(constants[node.input[1]]).tolist()
    return axes is not None and {a % 4 for a in axes} == SPATIAL_AXES[layout]


def mean_of(sums: list[np.ndarray], area: int, dtype: np.dtype, layout: str = "NCHW") -> np.ndarray:
    """The mean over a map's rows and columns from its cells' sums (each of shape (N, C)), shaped as the map's
    mean keeping its dims: (N, C, 1, 1), or (N, 1, 1, C) in NHWC."""
    mean = (np.sum(sums, axis=0) / area).astype(dtype)
    return mean[:, None, None, :] if layout == "NHWC" else mean[:, :, None, None]

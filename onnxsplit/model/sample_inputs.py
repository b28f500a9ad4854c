"""Inputs to run a model on when the user gives none: verification, profiling, benchmarks."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from splitnn.onnxsplit.model.graph import Graph

# Integer inputs are drawn from [0, INTEGER_HIGH), or from fewer values where the model indexes a table with them.
INTEGER_HIGH = 10
# Operators that pass an integer tensor's values through unchanged on the way to the Gather that reads them.
_VALUE_PRESERVING_OPS = frozenset({"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand",
                                   "Transpose"})


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """One random input per model input, in its real dtype and a plausible range (see random_feeds)."""
    specs = {name: (graph.info(name).shape, graph.info(name).dtype) for name in graph.inputs}
    return random_feeds(specs, seed, index_bounds(graph))


def random_feeds(specs: Mapping[str, tuple[Sequence[int], str]], seed: int = 0,
                 integer_highs: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random tensors for {name: (shape, dtype)}: floats uniform in [0, 1), booleans either way, integers in
    [0, 10), or in [0, integer_highs[name]) where that is smaller (the inputs that index a table)."""
    rng = np.random.default_rng(seed)
    highs = integer_highs or {}
    feeds = {}
    for name, (shape, dtype_name) in specs.items():
        dtype = np.dtype(dtype_name)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.random(tuple(shape)).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            high = max(1, min(INTEGER_HIGH, highs.get(name, INTEGER_HIGH)))
            feeds[name] = rng.integers(0, high, size=tuple(shape)).astype(dtype)
        else:
            feeds[name] = rng.random(tuple(shape)) > 0.5
    return feeds


def index_bounds(graph: Graph) -> dict[str, int]:
    """For each integer model input that indexes a table (the indices of a Gather, such as token ids into an
    embedding, directly or through casts and reshapes), the length of the smallest axis it indexes: random
    values below it are valid. Token-type ids into a table of 2 rows are the case that needs it."""
    bounds: dict[str, int] = {}
    for name in graph.inputs:
        if not np.issubdtype(np.dtype(graph.info(name).dtype), np.integer):
            continue
        lengths = _indexed_lengths(graph, name, depth=0)
        if lengths:
            bounds[name] = min(lengths)
    return bounds


def _indexed_lengths(graph: Graph, tensor: str, depth: int) -> list[int]:
    """The axis lengths of the Gathers that read `tensor`'s values as indices, following value-preserving ops."""
    if depth > 8:
        return []
    lengths = []
    for index in graph.consumers.get(tensor, ()):
        node = graph.nodes[index]
        if node.op_type == "Gather" and len(node.inputs) > 1 and node.inputs[1] == tensor:
            shape = graph.shape(node.inputs[0])
            axis = int(node.attrs.get("axis", 0))
            if shape and -len(shape) <= axis < len(shape):
                lengths.append(shape[axis])
        elif node.op_type in _VALUE_PRESERVING_OPS and node.inputs and node.inputs[0] == tensor:
            lengths += [n for out in node.outputs if out for n in _indexed_lengths(graph, out, depth + 1)]
    return lengths

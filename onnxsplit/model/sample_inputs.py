"""Inputs to run a model on when the user gives none: verification, profiling, benchmarks."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from splitnn.onnxsplit.model.graph import Graph


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """One random input per model input, in its real dtype and a plausible range (see random_feeds)."""
    return random_feeds({name: (graph.info(name).shape, graph.info(name).dtype) for name in graph.inputs}, seed)


def random_feeds(specs: Mapping[str, tuple[Sequence[int], str]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors for {name: (shape, dtype)}: floats uniform in [0, 1), integers in [0, 10), booleans either way."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype_name) in specs.items():
        dtype = np.dtype(dtype_name)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.random(tuple(shape)).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, 10, size=tuple(shape)).astype(dtype)
        else:
            feeds[name] = rng.random(tuple(shape)) > 0.5
    return feeds

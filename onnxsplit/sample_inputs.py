"""Inputs to run a model on when the user gives none: verification, profiling, benchmarks."""
from __future__ import annotations

import numpy as np

from onnxsplit.graph import Graph


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """One random input per model input, in its real dtype and a plausible range:
    floats uniform in [0, 1), integers in [0, 10), booleans either way."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        info = graph.info(name)
        dtype = np.dtype(info.dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.random(info.shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, 10, size=info.shape).astype(dtype)
        else:
            feeds[name] = rng.random(info.shape) > 0.5
    return feeds

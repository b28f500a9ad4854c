"""What a bench of a plan folder sends and what it compares the answers with.

The verification input and the original model's outputs on it, kept in the
folder at partition time; for a folder written before they were kept (schema
1), a random input and the original model run on it, when the model is there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import PlanFile, load_verification_data, model_path
from splitnn.onnxsplit.artifacts.verification import reference_outputs
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_feeds


def plan_feeds(plan: PlanFile, seed: int) -> dict[str, np.ndarray]:
    """A random input of each of the plan's input shapes and dtypes, from `seed` (integer inputs that index a
    table stay below its length)."""
    bounds = {n: s.index_bound for n, s in plan.inputs.items() if s.index_bound is not None}
    return random_feeds({n: (s.shape, s.dtype) for n, s in plan.inputs.items()}, seed, bounds)


def plan_graph(outdir: str | Path, plan: PlanFile) -> Graph | None:
    """The plan's original model, loaded with the input shapes the plan was made for; None when it is gone."""
    model = model_path(outdir, plan)
    if not model.is_file():
        return None
    return load_graph(model, {name: spec.shape for name, spec in plan.inputs.items()})


def inputs_and_reference(outdir: str | Path, plan: PlanFile,
                         seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """The input to send and the original model's outputs on it (None when neither is kept nor computable)."""
    kept = load_verification_data(outdir)
    if kept is not None:
        return kept
    feeds = plan_feeds(plan, seed)
    graph = plan_graph(outdir, plan)
    return feeds, (reference_outputs(graph, feeds) if graph is not None else None)

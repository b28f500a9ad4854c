"""Parts run one after another through one pool of tensors: the one chain executor.

torch.fx's `split_module` is the model: a partition is data (a model file and
the tensors it reads and returns), and one executor runs the partitions in
order, each reading the model's inputs and what earlier ones produced. The
rule, tested for every plan kind: the chained parts' outputs equal the
original model's.

A `SlicedStep` is a layer split by output neurons: every slice reads one
tensor and the slices' outputs, joined on the last axis, are the layer's
output. Where the slices run (here, one after the other, or on a cluster) is
the caller's choice (`run_slices`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitnn.onnxsplit.core.records import Record


@dataclass(frozen=True)
class PartStep(Record):
    """A part: its model (a path relative to the plan folder) and the tensors it reads and returns."""

    model: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    kind: str = "segment"


@dataclass(frozen=True)
class SliceRef(Record):
    model: str
    neurons: tuple[int, int]
    bytes: int


@dataclass(frozen=True)
class SlicedStep(Record):
    """A layer (node `node`) split by output neurons into `slices`, each with only its weights."""

    node: str
    input: str
    output: str
    slices: tuple[SliceRef, ...]
    kind: str = "neurons"


Step = PartStep | SlicedStep
RunSlices = Callable[[int, SlicedStep, np.ndarray], list[np.ndarray]]


def run_steps(steps: Sequence[Step], pool: dict[str, np.ndarray], session_of: Callable[[str], Any],
              run_slices: RunSlices | None = None) -> dict[str, np.ndarray]:
    """Run `steps` in order on the tensors in `pool` (updated in place and returned).

    `session_of(model)` gives the onnxruntime session of a step's model. The slices of sliced step number k
    run through `run_slices(k, step, x)` when given, else here one after the other.
    """
    for number, step in enumerate(steps):
        if isinstance(step, PartStep):
            values = session_of(step.model).run(list(step.outputs), {n: pool[n] for n in step.inputs})
            pool.update(zip(step.outputs, values))
            continue
        x = pool[step.input]
        if run_slices is None:
            parts = [session_of(s.model).run(None, {step.input: x})[0] for s in step.slices]
        else:
            parts = run_slices(number, step, x)
        pool[step.output] = np.concatenate(parts, axis=-1)
    return pool


def cached_sessions(open_session: Callable[[str], Any], cache: dict[str, Any] | None = None) -> Callable[[str], Any]:
    """`session_of` for run_steps: each model's session opened on first use and kept in `cache`."""
    cache = {} if cache is None else cache

    def session_of(model: str) -> Any:
        if model not in cache:
            cache[model] = open_session(model)
        return cache[model]

    return session_of


def outputs_of(pool: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: pool[n] for n in names}

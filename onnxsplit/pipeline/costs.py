"""What a stage and a hop of a pipeline cost, for every range of the model's order and every machine.

A stage runs the placed nodes at positions [i, j) of the graph's order (the
cuts of analysis/cuts.py: every prefix frontier, so a cut inside a block with
a skip connection sends every tensor that crosses it). Per machine, a stage
costs its nodes' roofline time on the machine's profile; its memory is the
weights its nodes read (each constant once per stage, whichever stage reads
it too) plus the largest activation set held while one of its nodes runs (the
whole model's liveness at that node: what the stage holds of it, or more).

What a hop at cut c carries: the tensors that cross c, the model outputs
computed before c (they travel with the frame and return from the last
stage), and the frame around them (cost_models/wire_bytes.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitnn.cost_models.latency import node_seconds
from splitnn.cost_models.machines import Machine
from splitnn.cost_models.wire_bytes import frame_overhead_bytes
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.analysis.memory import live_bytes_per_node


@dataclass(frozen=True)
class RangeCosts:
    """Tables over the positions 0..P: stage memory for every range, and the bytes every cut sends."""

    positions: int  # P: placed nodes
    names: tuple[str, ...]  # each position's node
    macs: np.ndarray  # prefix sums of MACs, P + 1
    weights: np.ndarray  # (P + 1) x (P + 1): weight bytes of the stage [i, j) at [i, j]; 0 where j <= i
    activations: np.ndarray  # the same shape: the largest live set of a node in [i, j)
    sent_bytes: np.ndarray  # P + 1: the frame a hop at cut c carries
    sent_tensors: tuple[tuple[str, ...], ...]  # P + 1: its tensors (crossing, then early model outputs)
    output_bytes: int  # the answer's frame: every model output

    def memory(self) -> np.ndarray:
        return self.weights + self.activations


def range_costs(analysis: Analysis) -> RangeCosts:
    """The memory and bytes tables of `analysis`'s model (independent of any machine)."""
    graph = analysis.graph
    placed = placeable_indices(graph)
    count = len(placed)
    position = {index: p for p, index in enumerate(placed)}
    macs = np.concatenate([[0], np.cumsum([analysis.nodes[i].macs for i in placed])]).astype(np.int64)
    # Weights: a constant is in stage [i, j) when one of its readers is; with next(i) its first reader at or after
    # i, that is next(i) < j. One difference-array row update per constant.
    readers: dict[str, list[int]] = {}
    for p, index in enumerate(placed):
        for name in graph.nodes[index].all_inputs:
            if name and graph.is_constant(name):
                readers.setdefault(name, []).append(p)
    steps = np.zeros((count + 1, count + 2))
    rows = np.arange(count + 1)
    for name, at in readers.items():
        at_sorted = np.array(sorted(set(at)))
        found = np.searchsorted(at_sorted, rows)
        has = found < len(at_sorted)
        np.add.at(steps, (rows[has], at_sorted[found[has]] + 1), float(graph.constant_values[name]))
    weights = np.cumsum(steps, axis=1)[:, : count + 1]
    every_live = live_bytes_per_node(graph)
    live = np.array([every_live[i] for i in placed] or [0], dtype=float)
    activations = np.zeros((count + 1, count + 1))
    for i in range(count):
        activations[i, i + 1:] = np.maximum.accumulate(live[i:count])
    # What each cut sends: the crossing tensors and the model outputs made before it.
    made_at = {name: position.get(graph.producer[name], -1) if name in graph.producer else -1 for name in graph.outputs}
    sent: list[tuple[str, ...]] = []
    sent_bytes = []
    for cut in analysis.cuts:
        early = [n for n in graph.outputs if made_at[n] < cut.id and n not in cut.tensors]
        tensors = (*cut.tensors, *early)
        sent.append(tensors)
        sent_bytes.append(_frame_bytes(analysis, tensors))
    return RangeCosts(count, tuple(graph.nodes[i].name for i in placed), macs, weights, activations,
                      np.array(sent_bytes, dtype=float), tuple(sent), _frame_bytes(analysis, tuple(graph.outputs)))


def _frame_bytes(analysis: Analysis, tensors: tuple[str, ...]) -> int:
    graph = analysis.graph
    infos = [(n, graph.info(n).shape, graph.info(n).dtype) for n in tensors]
    return sum(graph.info(n).nbytes for n in tensors) + frame_overhead_bytes(infos)


def compute_prefix(analysis: Analysis, machine: Machine) -> np.ndarray:
    """Prefix sums over the positions of every placed node's predicted seconds on `machine`'s profile."""
    graph, costs = analysis.graph, analysis.nodes
    times = [node_seconds(graph.nodes[i], costs[i], graph, machine.profile) for i in placeable_indices(graph)]
    return np.concatenate([[0.0], np.cumsum(times)])

"""Activation memory when the graph runs node by node in topological order.

Model: before a node runs, every activation still needed is held; the node's
outputs are allocated; then each activation whose last reader was this node is
freed (graph outputs are kept to the end). No buffer reuse or in-place
execution is assumed, so the figures are an upper bound of what a runtime
with a memory planner needs. Constants (weights) are counted separately.
"""
from __future__ import annotations

from splitnn.onnxsplit.model.graph import Graph


def activation_names(graph: Graph) -> list[str]:
    """Graph inputs and non-constant node outputs: the tensors that are computed."""
    names = list(graph.inputs)
    for node in graph.nodes:
        names += [out for out in node.outputs if out and not graph.is_constant(out)]
    return names


def live_bytes_per_node(graph: Graph) -> list[int]:
    """Bytes held while each node runs (its live inputs, everything still needed, its outputs)."""
    end = len(graph.nodes)
    last_use: dict[str, int] = {}
    for name in activation_names(graph):
        readers = graph.consumers.get(name, ())
        produced_at = graph.producer.get(name, -1)
        last_use[name] = end if name in graph.outputs else max(readers, default=produced_at)
    freed_at: dict[int, list[str]] = {}
    for name, step in last_use.items():
        freed_at.setdefault(step, []).append(name)

    live = sum(graph.info(name).nbytes for name in graph.inputs)
    for name in freed_at.get(-1, []):  # inputs no node reads
        live -= graph.info(name).nbytes
    per_node: list[int] = []
    for node in graph.nodes:
        live += sum(graph.info(out).nbytes for out in node.outputs if out in last_use)
        per_node.append(live)
        live -= sum(graph.info(name).nbytes for name in freed_at.get(node.index, []))
    return per_node


def peak_activation_bytes(graph: Graph) -> int:
    per_node = live_bytes_per_node(graph)
    inputs = sum(graph.info(name).nbytes for name in graph.inputs)
    return max(per_node, default=inputs)


def part_peak_bytes(graph: Graph, indices: list[int]) -> int:
    """Peak activation bytes of a part running graph nodes `indices` (in topological order) on its own: the
    graph inputs it reads are held from the start, and what later nodes outside it (or the model's outputs)
    need is held to the end."""
    inside = set(indices)
    last_use: dict[str, int] = {}
    for name in activation_names(graph):
        if name in graph.producer and graph.producer[name] not in inside:
            continue
        readers = graph.consumers.get(name, ())
        if name not in graph.producer and not any(r in inside for r in readers):
            continue  # a model input this part does not read
        needed_outside = name in graph.outputs or any(r not in inside for r in readers)
        last_use[name] = len(graph.nodes) if needed_outside else max((r for r in readers if r in inside),
                                                                      default=graph.producer.get(name, -1))
    freed_at: dict[int, list[str]] = {}
    for name, step in last_use.items():
        freed_at.setdefault(step, []).append(name)
    live = sum(graph.info(n).nbytes for n in last_use if n not in graph.producer)
    peak = live
    for index in sorted(inside):
        live += sum(graph.info(out).nbytes for out in graph.nodes[index].outputs if out in last_use)
        peak = max(peak, live)
        live -= sum(graph.info(n).nbytes for n in freed_at.get(index, []))
    return peak

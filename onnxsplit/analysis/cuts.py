"""Every place the model can be cut between a device part and a server part.

The non-Constant nodes, in topological order, are the positions 0..P-1. Cut k
puts positions < k on the device and the rest on the server. The tensors that
cross cut k are the computed tensors (graph inputs and node outputs, never
constants) that exist on the device side and are read on the server side.
That is one tensor where a single tensor separates the graph and several
inside a block with a skip connection. Constant nodes belong to no side: each
part gets the ones it reads. Cut 0 sends the raw inputs (all on the server);
cut P sends nothing (all on the device: the result is already where the
application runs). If/Loop/Scan nodes are single positions, so no cut falls
inside their bodies.

Rule, tested for every cut: the two parts extracted at a cut and chained
reproduce the model's outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from splitnn.cost_models.registry import NodeCost
from splitnn.onnxsplit.analysis.memory import live_bytes_per_node
from splitnn.onnxsplit.model.graph import Graph


@dataclass(frozen=True)
class Cut:
    """One frontier: what crosses it and what the device side costs."""

    id: int  # = position: the number of non-Constant nodes on the device
    tensors: tuple[str, ...]
    bytes: int
    device_nodes: int
    last_device_node: str | None  # name of the last node on the device, None for cut 0
    device_macs: int
    device_param_bytes: int
    device_peak_bytes: int
    server_macs: int
    server_param_bytes: int
    reply_bytes: int = 0  # model outputs computed on the server, sent back to the device

    @property
    def all_server(self) -> bool:
        return self.device_nodes == 0


def placeable_indices(graph: Graph) -> list[int]:
    """Node indices that take a position (everything but Constant nodes)."""
    return [node.index for node in graph.nodes if not node.is_constant]


def enumerate_cuts(graph: Graph, costs: list[NodeCost]) -> list[Cut]:
    placeable = placeable_indices(graph)
    count = len(placeable)
    position_of = {index: pos for pos, index in enumerate(placeable)}

    # Crossing interval of each computed tensor: on the device from `avail`, read up to `last`.
    intervals: list[tuple[int, int, str]] = []
    for name in dict.fromkeys(list(graph.inputs) + [o for n in graph.nodes for o in n.outputs if o]):
        if graph.is_constant(name):
            continue
        readers = [position_of[i] for i in graph.consumers.get(name, ()) if i in position_of]
        if not readers:
            continue
        avail = 0 if name not in graph.producer else position_of[graph.producer[name]] + 1
        intervals.append((avail, max(readers), name))
    starting: dict[int, list[tuple[int, str]]] = {}
    for avail, last, name in intervals:
        starting.setdefault(avail, []).append((last, name))

    live = live_bytes_per_node(graph)
    input_bytes = sum(graph.info(name).nbytes for name in graph.inputs)
    device_constants = _cumulative_constant_bytes(graph, placeable)
    server_constants = _cumulative_constant_bytes(graph, placeable[::-1])[::-1]
    total_macs = sum(cost.macs for cost in costs)
    # Position of the node producing each model output (-1: an input passed through).
    output_positions = [(position_of.get(graph.producer[name], -1) if name in graph.producer else -1, graph.info(name).nbytes)
                        for name in graph.outputs]

    cuts: list[Cut] = []
    open_tensors: dict[str, int] = {}  # name -> last reader position
    device_macs = 0
    device_peak = input_bytes
    for k in range(count + 1):
        for last, name in starting.get(k, []):
            open_tensors[name] = last
        for name in [n for n, last in open_tensors.items() if last < k]:
            del open_tensors[name]
        tensors = tuple(open_tensors)
        cuts.append(
            Cut(
                id=k,
                tensors=tensors,
                bytes=sum(graph.info(name).nbytes for name in tensors),
                device_nodes=k,
                last_device_node=graph.nodes[placeable[k - 1]].name if k else None,
                device_macs=device_macs,
                device_param_bytes=device_constants[k],
                device_peak_bytes=device_peak,
                server_macs=total_macs - device_macs,
                server_param_bytes=server_constants[k],
                reply_bytes=sum(nbytes for position, nbytes in output_positions if position >= k),
            )
        )
        if k < count:
            device_macs += costs[placeable[k]].macs
            device_peak = max(device_peak, live[placeable[k]])
    return cuts


def _cumulative_constant_bytes(graph: Graph, indices: list[int]) -> list[int]:
    """Constant bytes read by the first k of `indices`, each constant once, for k = 0..len."""
    seen: set[str] = set()
    total = 0
    result = [0]
    for index in indices:
        for name in graph.nodes[index].all_inputs:
            if graph.is_constant(name) and name not in seen:
                seen.add(name)
                total += graph.constant_values[name]
        result.append(total)
    return result

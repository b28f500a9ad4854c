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
from splitnn.onnxsplit.analysis.memory import live_bytes_per_node, part_peak_bytes
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
    # The device side as a set of node indices, when it is not the first `device_nodes` placed nodes in the
    # graph's order (a min-cut partition: each branch may go to its own depth); None for prefix cuts.
    device_indices: tuple[int, ...] | None = None
    device_names: tuple[str, ...] | None = None  # the names of those nodes, as plan.json records them

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


def device_side(graph: Graph, cut: Cut) -> list[int]:
    """The placed node indices on the device side of `cut`, in topological order."""
    if cut.device_indices is not None:
        return list(cut.device_indices)
    return placeable_indices(graph)[: cut.device_nodes]


def cut_of_device_set(graph: Graph, costs: list[NodeCost], device: set[int] | frozenset[int], cut_id: int) -> Cut:
    """The Cut whose device side is the placed nodes `device` (closed under predecessors: every node an
    element reads from is in it too)."""
    placed = placeable_indices(graph)
    placed_set = set(placed)
    indices = sorted(i for i in placed if i in device)
    server = [i for i in placed if i not in device]
    server_reads = {n for i in server for n in graph.nodes[i].all_inputs}
    made_on_device = {out for i in indices for out in graph.nodes[i].outputs if out}
    tensors = tuple(n for n in dict.fromkeys([*graph.inputs, *(o for i in indices for o in graph.nodes[i].outputs)])
                    if n and n in server_reads and not graph.is_constant(n) and (n in made_on_device or n in graph.inputs))
    device_constants = {n for i in indices for n in graph.nodes[i].all_inputs if graph.is_constant(n)}
    server_constants = {n for i in server for n in graph.nodes[i].all_inputs if graph.is_constant(n)}
    return Cut(
        id=cut_id,
        tensors=tensors,
        bytes=sum(graph.info(name).nbytes for name in tensors),
        device_nodes=len(indices),
        last_device_node=graph.nodes[indices[-1]].name if indices else None,
        device_macs=sum(costs[i].macs for i in indices),
        device_param_bytes=sum(graph.constant_values[n] for n in device_constants),
        device_peak_bytes=part_peak_bytes(graph, indices),
        server_macs=sum(costs[i].macs for i in server),
        server_param_bytes=sum(graph.constant_values[n] for n in server_constants),
        reply_bytes=sum(graph.info(o).nbytes for o in graph.outputs if o in graph.producer
                        and graph.producer[o] not in device and graph.producer[o] in placed_set),
        device_indices=tuple(indices),
        device_names=tuple(graph.nodes[i].name for i in indices),
    )


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

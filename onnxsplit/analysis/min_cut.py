"""The latency-optimal device side over every predecessor-closed set of nodes (DADS's minimum s-t cut).

Prefix cuts of one topological order miss partitions where branches that run
side by side (detector heads, feature pyramids, squeeze-excitation, skips) go
to different depths. DADS (Hu et al., INFOCOM 2019) turns the choice into a
minimum s-t cut. With S the device and T the server, on a graph of the placed
nodes:

  S -> v   capacity: v's server seconds (+ the reply of the model outputs v makes): paid when v is on the server
  v -> T   capacity: v's device seconds: paid when v is on the device
  u -> t   capacity: tensor t's transfer seconds (+ its encode), for the node u producing it, and
  t -> w   infinite, for each node w reading it, so a tensor read by several server nodes is paid once
  w -> u   infinite: a device side must hold every node its nodes read from (no data flows back)

Graph inputs are produced by a node pinned on the device. The cut's capacity
is then the latency of that partition, except the one round trip every
partition that sends something pays, so the caller compares the best cut
(plus the round trip) with all on the device. Static nodes take no part.

scipy's `maximum_flow` (integer capacities: seconds are taken in nanoseconds)
finds the flow; the device side is what the source still reaches in the
residual graph.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from splitnn.onnxsplit.model.graph import Graph

NANOSECONDS = 1e9


def closed_sets_are_prefixes(graph: Graph, placed: list[int]) -> bool:
    """Whether every predecessor-closed set of the placed nodes (in topological order) is a prefix of them: so when
    each node reads something its predecessor in the order makes (a chain, as VGG's), and no minimum cut can be
    anything but a prefix cut."""
    return all(any(graph.producer.get(name) == before for name in graph.nodes[after].all_inputs)
               for before, after in zip(placed, placed[1:]))


def min_cut_device_side(graph: Graph, device_s: Mapping[int, float], server_s: Mapping[int, float],
                        tensor_s: Callable[[str], float], reply_s: Callable[[str], float]) -> frozenset[int]:
    """The placed nodes on the device in a partition minimising device + transfer + server + reply seconds.

    `device_s` and `server_s` give each placed node's seconds; `tensor_s(name)` the cost of sending a tensor
    up, `reply_s(name)` of sending a model output computed on the server back.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    placed = sorted(device_s)
    ids = {index: position + 2 for position, index in enumerate(placed)}  # 0: source (device), 1: sink (server)
    next_id = len(placed) + 2
    input_node = next_id  # produces the graph inputs, pinned on the device
    next_id += 1
    edges: dict[tuple[int, int], float] = {}

    def add(a: int, b: int, seconds: float) -> None:
        edges[(a, b)] = edges.get((a, b), 0.0) + seconds

    infinite = float("inf")
    add(0, input_node, infinite)
    for index in placed:
        reply = sum(reply_s(out) for out in graph.nodes[index].outputs if out in graph.outputs)
        add(0, ids[index], server_s[index] + reply)
        add(ids[index], 1, device_s[index])
    for name in dict.fromkeys([*graph.inputs, *(o for i in placed for o in graph.nodes[i].outputs if o)]):
        readers = [ids[r] for r in graph.consumers.get(name, ()) if r in ids]
        if not readers or graph.is_constant(name):
            continue
        producer = input_node if name not in graph.producer else ids[graph.producer[name]]
        tensor = next_id
        next_id += 1
        add(producer, tensor, tensor_s(name))
        for reader in readers:
            add(tensor, reader, infinite)
            add(reader, producer, infinite)
    return frozenset(placed[i - 2] for i in _source_side(edges, next_id, csr_matrix, maximum_flow, breadth_first_order)
                     if 2 <= i < len(placed) + 2)


def _source_side(edges: dict[tuple[int, int], float], count: int, csr_matrix, maximum_flow,
                 breadth_first_order) -> set[int]:
    finite = [s for s in edges.values() if s != float("inf")]
    big = int(sum(finite) * NANOSECONDS) + 1  # more than any cut of finite edges: "infinite"
    rows = np.array([a for a, _ in edges], dtype=np.int32)
    cols = np.array([b for _, b in edges], dtype=np.int32)
    caps = np.array([big if s == float("inf") else int(round(s * NANOSECONDS)) for s in edges.values()], dtype=np.int64)
    # maximum_flow wants int32 capacities: scale down when the sums would not fit.
    scale = max(1, -(-int(caps.max()) // (2**31 - 1)))
    capacity = csr_matrix((np.maximum(caps // scale, 0).astype(np.int32), (rows, cols)), shape=(count, count))
    flow = maximum_flow(capacity, 0, 1).flow
    residual = (capacity - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    return set(breadth_first_order(residual, 0, directed=True, return_predecessors=False).tolist())

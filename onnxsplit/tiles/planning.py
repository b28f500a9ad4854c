"""Choose a tile plan: how deep to fuse, which grid, under each node's memory, by predicted makespan.

Per candidate (depth d, grid R x C) on N identical nodes of profile P:
  tile time     = sum over the stack's layers of roofline(layer on P) x the
                  tile's share of that layer's output area (overlaps included);
  tiles phase   = the largest node load when the tiles are dealt out longest
                  first (LPT; a work-stealing scheduler does at least as well
                  on identical nodes);
  remainder     = roofline of the rest of the model on one node, except layers
                  whose weights exceed a node's RAM: split by output neurons
                  across nodes, their time divided by the number of slices;
  makespan      = tiles phase + remainder (moving tiles over the network is
                  not modelled: on loopback and a board LAN it is small next to
                  the compute; run-bench measures it).
Memory per node: the stack's weights + the largest tile's activations (input
and output of its largest layer) <= the profile's usable RAM (80% by default).
Candidates: depths ending at each pooling layer and at the end of the stack;
grids 1..6 x 1..6 (DeepThings' range).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from splitnn.cost_models.latency import node_seconds, seconds
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.tiles.geometry import Layer, TileGrid, fused_stack, tile_grid
from splitnn.onnxsplit.tiles.neuron_split import NeuronSplit, plan_neuron_splits

MAX_GRID = 6


@dataclass(frozen=True)
class TilePlan:
    grid: TileGrid
    nodes: int
    profile: DeviceProfile
    stack_param_bytes: int
    node_memory_bytes: int  # what one node must hold: stack weights + the largest tile's activations
    tile_seconds: tuple[float, ...]
    tiles_phase_s: float
    remainder_s: float
    single_node_s: float  # the whole model on one node, untiled
    remainder_indices: tuple[int, ...]
    neuron_splits: tuple[NeuronSplit, ...] = ()  # remainder layers too big for a node, split by output neurons

    @property
    def makespan_s(self) -> float:
        return self.tiles_phase_s + self.remainder_s

    @property
    def stack(self) -> list[Layer]:
        return self.grid.stack

    def to_dict(self) -> dict[str, Any]:
        g = self.grid
        return {
            "strategy": "tiles",
            "nodes": self.nodes,
            "node_profile": self.profile.to_dict(),
            "grid": {"rows": g.rows, "cols": g.cols},
            "fuse_until": self.stack[-1].output,
            "image_layout": self.stack[0].in_layout,
            "stack": [{"node": layer.name, "op_type": layer.op_type, "input": layer.input, "output": layer.output,
                       "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape), "macs": layer.macs,
                       "window": None if layer.window is None else {
                           "kernel": list(layer.window.kernel), "stride": list(layer.window.stride),
                           "pads": list(layer.window.pads), "dilation": list(layer.window.dilation)}}
                      for layer in self.stack],
            "tiles": [{**tile.to_dict(), "predicted_s": s} for tile, s in zip(g.tiles, self.tile_seconds)],
            "stack_macs": g.stack_macs,
            "tiled_macs": g.tiled_macs,
            "redundant_macs_ratio": g.redundant_macs_ratio,
            "stack_peak_bytes": g.stack_peak_bytes,
            "max_tile_peak_bytes": g.max_tile_peak_bytes,
            "tile_peak_fraction": g.max_tile_peak_bytes / g.stack_peak_bytes,
            "memory": {"stack_param_bytes": self.stack_param_bytes, "node_bytes": self.node_memory_bytes,
                       "node_usable_bytes": self.profile.usable_ram_bytes},
            "neuron_splits": [split.to_dict() for split in self.neuron_splits],
            "predicted": {"tiles_phase_s": self.tiles_phase_s, "remainder_s": self.remainder_s,
                          "makespan_s": self.makespan_s, "single_node_s": self.single_node_s,
                          "speedup": self.single_node_s / self.makespan_s if self.makespan_s else None},
        }


def lpt_deal(durations: list[float], nodes: int) -> list[list[int]]:
    """The tasks (indices into `durations`) each node gets when they are dealt out longest first to the least
    loaded node."""
    loads = [(0.0, node) for node in range(nodes)]
    dealt: list[list[int]] = [[] for _ in range(nodes)]
    for index in sorted(range(len(durations)), key=lambda i: -durations[i]):
        load, node = heapq.heappop(loads)
        dealt[node].append(index)
        heapq.heappush(loads, (load + durations[index], node))
    return dealt


def lpt_makespan(durations: list[float], nodes: int) -> float:
    """Largest node load when tasks are dealt out longest first to the least loaded node."""
    return max(sum(durations[i] for i in tasks) for tasks in lpt_deal(durations, nodes))


def _candidate(analysis: Analysis, stack: list[Layer], rows: int, cols: int, nodes: int, profile: DeviceProfile) -> TilePlan:
    graph, costs = analysis.graph, analysis.nodes
    grid = tile_grid(stack, rows, cols)
    per_layer = [node_seconds(graph.nodes[layer.index], costs[layer.index], graph, profile) for layer in stack]
    tile_s = []
    for tile in grid.tiles:
        total = 0.0
        for layer, part, layer_s in zip(stack, tile.layers, per_layer):
            area = (part.output_region[1] - part.output_region[0]) * (part.output_region[3] - part.output_region[2])
            total += layer_s * area / (layer.out_shape[2] * layer.out_shape[3])
        tile_s.append(total)
    in_stack = {layer.index for layer in stack}
    remainder = tuple(i for i in placeable_indices(graph) if i not in in_stack)
    stack_params = sum(costs[layer.index].param_bytes for layer in stack)
    tiles_fit = stack_params + grid.max_tile_peak_bytes <= profile.usable_ram_bytes
    # (A candidate whose tiles do not fit is ruled out anyway: its remainder is not worth splitting.)
    splits = plan_neuron_splits(graph, costs, remainder, nodes, profile.usable_ram_bytes) if tiles_fit else []
    split_at = {split.index: len(split.ranges) for split in splits}
    # A split layer's slices run at once on as many nodes; the rest of the remainder on the client.
    remainder_s = sum(seconds(graph, costs, [i], profile) / split_at.get(i, 1) for i in remainder)
    return TilePlan(
        grid=grid, nodes=nodes, profile=profile, stack_param_bytes=stack_params,
        node_memory_bytes=stack_params + grid.max_tile_peak_bytes, tile_seconds=tuple(tile_s),
        tiles_phase_s=lpt_makespan(tile_s, nodes), remainder_s=remainder_s,
        single_node_s=seconds(graph, costs, placeable_indices(graph), profile), remainder_indices=remainder,
        neuron_splits=tuple(splits),
    )


def plan_tiles(analysis: Analysis, nodes: int, profile: DeviceProfile, grid: tuple[int, int] | None = None,
               until: str | None = None) -> TilePlan:
    """The tile plan for `nodes` nodes of `profile`: the grid and depth given, or the best predicted (None = auto)."""
    if nodes < 1:
        raise SplitnnError("--nodes must be at least 1")
    full = fused_stack(analysis.graph, analysis.nodes, until)
    if until is not None:
        depths = [len(full)]
    else:
        depths = sorted({i + 1 for i, layer in enumerate(full) if layer.op_type in ("MaxPool", "AveragePool")} | {len(full)})
    plans = []
    refused: SplitnnError | None = None
    for depth in depths:
        stack = full[:depth]
        h, w = stack[-1].out_shape[2], stack[-1].out_shape[3]
        grids = [grid] if grid is not None else [(r, c) for r in range(1, MAX_GRID + 1) for c in range(1, MAX_GRID + 1)]
        for rows, cols in grids:
            if rows <= h and cols <= w:  # at least one output row and column per tile
                try:
                    plans.append(_candidate(analysis, stack, rows, cols, nodes, profile))
                except SplitnnError as exc:  # a remainder layer no set of nodes can hold at this depth
                    refused = exc
    if not plans and refused is not None:
        raise refused
    if not plans:
        out = full[-1].out_shape
        raise SplitnnError(f"a {grid[0]}x{grid[1]} grid is finer than the stack's output ({out[2]}x{out[3]}): "  # type: ignore[index]
                           "use a coarser --grid or an earlier --fuse-until")
    fitting = [p for p in plans if p.node_memory_bytes <= profile.usable_ram_bytes]
    if not fitting:
        smallest = min(plans, key=lambda p: p.node_memory_bytes)
        raise SplitnnError(
            f"no tile fits a node of '{profile.name}': the smallest need is {smallest.node_memory_bytes:,} B "
            f"({smallest.grid.rows}x{smallest.grid.cols} grid: {smallest.stack_param_bytes:,} B of weights + "
            f"{smallest.grid.max_tile_peak_bytes:,} B of activations) against {profile.usable_ram_bytes:,} B usable; "
            "use a finer --grid, an earlier --fuse-until, or a node profile with more RAM")
    return min(fitting, key=lambda p: (round(p.makespan_s, 9), p.grid.rows * p.grid.cols, -len(p.stack)))

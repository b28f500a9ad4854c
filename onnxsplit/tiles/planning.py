"""Choose a tile plan: how deep to fuse, where to stitch, which grids, under each node's memory, by predicted makespan.

The tiled part of the model is the region of layers local in space from the
image (tiles/stack_region.py), cut into one or more stacks in sequence. Each
stack is split into its own grid of tiles; its tiles run across the nodes,
the client stitches the maps they hand on into a pool, and the next stack's
tiles are cropped from the maps of that pool it reads (the overlaps of a
stack never grow past its own layers: a deep single stack's halo does). Per candidate on N identical nodes of profile P:
  tile time     = sum over the stack's layers of roofline(layer on P) x the
                  tile's share of that layer's output area (overlaps included);
  stack phase   = the largest node load when the stack's tiles are dealt out
                  longest first (LPT; a work-stealing scheduler does at least
                  as well on identical nodes);
  transfer      = every tile's crops of the stack's inputs and its outputs,
                  in bytes, over the cluster's link (cluster_link_bps, by
                  default gigabit Ethernet, a board's port): the client sends
                  and gathers them one after another;
  tiles phase   = the stack phases and transfers + one STITCH_ROUND_TRIP_S
                  per stack (the client sends its tiles out and gathers them
                  back);
  remainder     = roofline of the rest of the model on one node, except fully
                  connected layers split by output neurons across the nodes
                  (those whose weights exceed a node's RAM, and those
                  predicted faster so): their time divided by the number of
                  slices, plus one STITCH_ROUND_TRIP_S;
  makespan      = tiles phase + remainder.
Memory per node: every stack's weights (a node runs tiles of each) + the
largest tile's activations (input and output of its largest layer) <= the
profile's usable RAM (80% by default).
Candidates: the tiled part and each stack end where the map shrinks (a
pooling layer, a strided convolution) and a stack may end
(stack_region.stack_ends), at most MAX_ENDS of them, or at the region's end;
a stack also ends at every client step inside the tiled part (a
squeeze-and-excitation vector the client computes from the stitched map:
its time on one node is added to the tiles phase, with the next stack's
round trip);
grids 1..6 x 1..6 (DeepThings' range). For one stack every (depth, grid) is
tried; for several, each stack takes its own best grid and the stack ends
come from a dynamic programme over those points (the stacks' phases add up,
so the best split of a depth is made of the best splits of its prefixes).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from splitnn.cost_models.latency import node_seconds, seconds
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.cost_models.registry import UnpricedOps, unpriced_ops
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.tiles.geometry import Layer, TileGrid, tile_grid
from splitnn.onnxsplit.tiles.stack_region import (
    ClientStep,
    StackEnds,
    logical,
    TileCoverage,
    fused_stack,
    stack_ends,
    tile_coverage,
    tileable_region,
)
from splitnn.onnxsplit.tiles.neuron_split import NeuronSplit, plan_neuron_splits

MAX_GRID = 6
MAX_ENDS = 12  # where stacks may end, at most (the dynamic programme over them grows with their square)
# What each stack costs beyond its tiles: the client sends the stack's tiles out and gathers and stitches their
# maps, one scheduler round trip. A Dask round trip for a task is about 10 ms even for an empty one (docs/measurements.md, tiles).
STITCH_ROUND_TRIP_S = 0.010
CLUSTER_LINK_BPS = 1e9  # the nodes' and the client's link by default: gigabit Ethernet, a board's port
FC_SPLITS = ("time", "memory")  # when a fully connected layer of the remainder is split by neurons (plan_tiles)


@dataclass(frozen=True)
class StackPhase:
    """One fused stack split into its grid: its tiles run across the nodes, then the client stitches them."""

    grid: TileGrid
    tile_seconds: tuple[float, ...]
    phase_s: float  # the largest node load, tiles dealt out longest first
    param_bytes: int  # the stack's weights, which every node holds
    untiled_s: float = 0.0  # the stack's layers on one node, untiled
    before: ClientStep | None = None  # what the client computes from the stitched maps before this stack's tiles
    before_s: float = 0.0  # that client step on one node
    transfer_bytes: int = 0  # every tile's crops of the stack's inputs and its outputs
    transfer_s: float = 0.0  # those bytes over the cluster's link

    @property
    def total_s(self) -> float:
        """The client step, the tiles on the nodes, and their bytes on the link (the round trip aside)."""
        return self.before_s + self.phase_s + self.transfer_s

    @property
    def stack(self) -> list[Layer]:
        return self.grid.stack


@dataclass(frozen=True)
class TilePlan:
    stacks: tuple[StackPhase, ...]  # in order: each stack starts from the previous one's stitched output
    nodes: int
    profile: DeviceProfile
    node_memory_bytes: int  # what one node must hold: every stack's weights + the largest tile's activations
    remainder_s: float
    single_node_s: float  # the whole model on one node, untiled
    remainder_indices: tuple[int, ...]
    neuron_splits: tuple[NeuronSplit, ...] = ()  # remainder layers too big for a node, split by output neurons
    unpriced: UnpricedOps | None = None  # nodes of an unknown operator, priced at 0 s in every prediction here
    coverage: TileCoverage | None = None  # how far tiles reach in this model, and where they stop
    cluster_link_bps: float = CLUSTER_LINK_BPS  # what the tiles' bytes are priced at

    @property
    def tiled_macs_total(self) -> int:
        """The MACs of every stack's layers (each once)."""
        return sum(phase.grid.stack_macs for phase in self.stacks)

    @property
    def tiled_time_share(self) -> float:
        """The stacks' layers' share of the model's predicted time on one node."""
        return sum(phase.untiled_s for phase in self.stacks) / self.single_node_s if self.single_node_s else 0.0

    @property
    def speedup_bound(self) -> float:
        """The most the nodes could give with the stacks' layers split perfectly and the rest on one node."""
        share = self.tiled_time_share
        return 1.0 / ((1.0 - share) + share / self.nodes)

    @property
    def grid(self) -> TileGrid:  # the first stack's (the one that reads the image)
        return self.stacks[0].grid

    @property
    def stack(self) -> list[Layer]:
        return self.stacks[0].stack

    @property
    def tile_seconds(self) -> tuple[float, ...]:
        return self.stacks[0].tile_seconds

    @property
    def stack_param_bytes(self) -> int:
        return sum(phase.param_bytes for phase in self.stacks)

    @property
    def tiles_phase_s(self) -> float:
        """Every stack's phase, and each stack's round trip through the client."""
        return sum(phase.total_s for phase in self.stacks) + STITCH_ROUND_TRIP_S * len(self.stacks)

    @property
    def makespan_s(self) -> float:
        return self.tiles_phase_s + self.remainder_s

    @property
    def last_output(self) -> str:
        """The last stack's (last) output."""
        return self.stacks[-1].grid.output_names[-1]

    def to_dict(self) -> dict[str, Any]:
        g = self.grid
        return {
            "strategy": "tiles",
            "nodes": self.nodes,
            "node_profile": self.profile.to_dict(),
            "grid": {"rows": g.rows, "cols": g.cols},
            "fuse_until": self.stacks[0].grid.output_names[-1],
            "stack_outputs": list(self.stacks[0].grid.outputs),
            "image_layout": self.stack[0].in_layout,
            "stack": _stack_dict(self.stack),
            "tiles": _tiles_dict(self.stacks[0]),
            "stack_macs": g.stack_macs,
            "tiled_macs": g.tiled_macs,
            "redundant_macs_ratio": g.redundant_macs_ratio,
            "stack_peak_bytes": g.stack_peak_bytes,
            "max_tile_peak_bytes": g.max_tile_peak_bytes,
            "tile_peak_fraction": g.max_tile_peak_bytes / g.stack_peak_bytes,
            "later_stacks": [_later_stack_dict(phase) for phase in self.stacks[1:]],
            "memory": {"stack_param_bytes": self.stack_param_bytes, "node_bytes": self.node_memory_bytes,
                       "node_usable_bytes": self.profile.usable_ram_bytes},
            "neuron_splits": [split.to_dict() for split in self.neuron_splits],
            "coverage": _coverage_of(self),
            "predicted": {"tiles_phase_s": self.tiles_phase_s, "remainder_s": self.remainder_s,
                          "makespan_s": self.makespan_s, "single_node_s": self.single_node_s,
                          "speedup": self.single_node_s / self.makespan_s if self.makespan_s else None,
                          "stack_phases_s": [phase.total_s for phase in self.stacks],
                          "stack_transfer_bytes": [phase.transfer_bytes for phase in self.stacks],
                          "cluster_link_bps": self.cluster_link_bps},
        }


def _coverage_of(plan: TilePlan) -> dict[str, Any] | None:
    c = plan.coverage
    if c is None:
        return None
    return {"model_macs": c.model_macs, "region_macs": c.region_macs, "deepest_stack_macs": c.deepest_stack_macs,
            "tiled_macs": plan.tiled_macs_total, "whole_map_node": c.whole_map_node, "whole_map_op": c.whole_map_op,
            "macs_before_whole_map": c.macs_before_whole_map, "tiled_time_share": plan.tiled_time_share,
            "speedup_bound": plan.speedup_bound,
            "stops": [{"node": s.node, "op_type": s.op_type, "reason": s.reason, "whole_map": s.whole_map,
                       "after_layers": s.after_layers} for s in c.stops],
            "region_layers": c.region_layers, "deepest_stack_layers": c.deepest_stack_layers,
            "live_after_stack": list(c.live_after_stack), "client_steps": c.client_steps}


def _stack_dict(stack: list[Layer]) -> list[dict[str, Any]]:
    return [{"node": layer.name, "op_type": layer.op_type, "input": layer.input, "output": layer.output,
             "in_layout": layer.in_layout, "out_layout": layer.out_layout,
             "inputs": list(layer.data_inputs) if len(layer.data_inputs) > 1 else [],
             "broadcast": list(layer.broadcast),
             "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape), "macs": layer.macs,
             "window": None if layer.window is None else {
                 "kernel": list(layer.window.kernel), "stride": list(layer.window.stride),
                 "pads": list(layer.window.pads), "dilation": list(layer.window.dilation)}}
            for layer in stack]


def _tiles_dict(phase: StackPhase) -> list[dict[str, Any]]:
    return [{**tile.to_dict(), "predicted_s": s} for tile, s in zip(phase.grid.tiles, phase.tile_seconds)]


def _later_stack_dict(phase: StackPhase) -> dict[str, Any]:
    g = phase.grid
    return {"grid": {"rows": g.rows, "cols": g.cols}, "input": g.inputs[0], "fuse_until": g.output_names[-1],
            "inputs": list(g.inputs) if len(g.inputs) > 1 else [], "outputs": list(g.outputs),
            "stack": _stack_dict(phase.stack), "tiles": _tiles_dict(phase), "stack_macs": g.stack_macs,
            "tiled_macs": g.tiled_macs, "max_tile_peak_bytes": g.max_tile_peak_bytes, "param_bytes": phase.param_bytes,
            "predicted_phase_s": phase.total_s, "client_step": None if phase.before is None else {
                "nodes": list(phase.before.names), "outputs": list(phase.before.outputs),
                "predicted_s": phase.before_s}}


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


class NodeTimes:
    """Each node's roofline seconds on one profile, computed on first use (a plan prices the same nodes in many
    candidate stacks)."""

    def __init__(self, analysis: Analysis, profile: DeviceProfile) -> None:
        self.analysis, self.profile = analysis, profile
        self.known: dict[int, float] = {}

    def __call__(self, index: int) -> float:
        if index not in self.known:
            graph = self.analysis.graph
            self.known[index] = node_seconds(graph.nodes[index], self.analysis.nodes[index], graph, self.profile)
        return self.known[index]

    def total(self, indices: Iterable[int]) -> float:
        return sum(self(i) for i in indices)


def _phase(analysis: Analysis, stack: list[Layer], rows: int, cols: int, nodes: int, profile: DeviceProfile,
           outputs: tuple[str, ...] = (), link_bps: float = CLUSTER_LINK_BPS, times: NodeTimes | None = None
           ) -> StackPhase:
    """One stack (handing on `outputs`, by default its last layer's) in a rows x cols grid, its tiles timed by the
    roofline (`times`, made for `profile` where not given) and dealt out to `nodes` nodes, their bytes priced on a
    link of `link_bps`."""
    costs = analysis.nodes
    times = times or NodeTimes(analysis, profile)
    grid = tile_grid(stack, rows, cols, outputs)
    per_layer = [times(layer.index) for layer in stack]
    tile_s = []
    for tile in grid.tiles:
        total = 0.0
        for layer, part, layer_s in zip(stack, tile.layers, per_layer):
            done = part.computed_region or part.output_region
            area = (done[1] - done[0]) * (done[3] - done[2])
            total += layer_s * area / (layer.out_shape[2] * layer.out_shape[3])
        tile_s.append(total)
    params = sum(costs[layer.index].param_bytes for layer in stack)
    moved = _transfer_bytes(analysis, grid)
    return StackPhase(grid, tuple(tile_s), lpt_makespan(tile_s, nodes), params, sum(per_layer),
                      transfer_bytes=moved, transfer_s=moved * 8 / link_bps)


def _transfer_bytes(analysis: Analysis, grid: TileGrid) -> int:
    """What the client sends and gathers for one image's tiles of `grid`: each tile's crop of every stack input
    (a whole-map vector whole) and its cell of every output."""
    graph = analysis.graph

    def per_position(name: str, layout: str) -> int:  # bytes of one row-and-column position, all channels
        info = graph.info(name)
        _, _, h, w = logical(tuple(info.shape), layout)
        return info.nbytes // max(h * w, 1)

    sizes_in = [per_position(name, grid.input_layout(name)) for name in grid.inputs]
    sizes_out = [per_position(name, grid.output_layout(name)) for name in grid.output_names]
    total = 0
    for tile in grid.tiles:
        for size, region in zip(sizes_in, tile.input_regions or (tile.input_region,)):
            total += size * (region[1] - region[0]) * (region[3] - region[2])
        for size, region in zip(sizes_out, tile.output_regions or (tile.output_region,)):
            total += size * (region[1] - region[0]) * (region[3] - region[2])
    return total


def _with_step(analysis: Analysis, profile: DeviceProfile, step: ClientStep | None,
               phase: StackPhase | None) -> StackPhase | None:
    """`phase` with the client step that runs before it, timed on one node of `profile`."""
    if phase is None or step is None:
        return phase
    return replace(phase, before=step, before_s=seconds(analysis.graph, analysis.nodes, list(step.indices), profile))


def _candidate(analysis: Analysis, stacks: list[StackPhase], nodes: int, profile: DeviceProfile,
               fc_split: str = "time", times: NodeTimes | None = None) -> TilePlan:
    graph, costs = analysis.graph, analysis.nodes
    times = times or NodeTimes(analysis, profile)
    in_stack = {layer.index for phase in stacks for layer in phase.stack} | \
        {i for phase in stacks if phase.before is not None for i in phase.before.indices}
    remainder = tuple(i for i in placeable_indices(graph) if i not in in_stack)
    node_bytes = sum(phase.param_bytes for phase in stacks) + max(phase.grid.max_tile_peak_bytes for phase in stacks)
    tiles_fit = node_bytes <= profile.usable_ram_bytes
    layer_s = times

    # (A candidate whose tiles do not fit is ruled out anyway: its remainder is not worth splitting.)
    splits = plan_neuron_splits(graph, costs, remainder, nodes, profile.usable_ram_bytes,
                                layer_s if fc_split == "time" else None, STITCH_ROUND_TRIP_S) if tiles_fit else []
    split_at = {split.index: len(split.ranges) for split in splits}
    # A split layer's slices run at once on as many nodes, a round trip for them all; the rest on the client.
    remainder_s = sum(layer_s(i) / split_at[i] + STITCH_ROUND_TRIP_S if i in split_at else layer_s(i) for i in remainder)
    return TilePlan(
        stacks=tuple(stacks), nodes=nodes, profile=profile, node_memory_bytes=node_bytes, remainder_s=remainder_s,
        single_node_s=times.total(placeable_indices(graph)), remainder_indices=remainder,
        neuron_splits=tuple(splits),
    )


def _grids(grid: tuple[int, int] | None, stack: list[Layer], outputs: tuple[str, ...] = (),
           most_tiles: int | None = None) -> list[tuple[int, int]]:
    """The grids tried for `stack`: the one given, or every grid up to MAX_GRID (of at most `most_tiles` tiles),
    that leave each tile at least one row and column of each output."""
    shapes = [layer.out_shape for layer in stack if layer.output in (outputs or (stack[-1].output,))]
    h, w = min(shape[2] for shape in shapes), min(shape[3] for shape in shapes)
    grids = [grid] if grid is not None else [(r, c) for r in range(1, MAX_GRID + 1) for c in range(1, MAX_GRID + 1)
                                             if most_tiles is None or r * c <= most_tiles]
    return [(rows, cols) for rows, cols in grids if rows <= h and cols <= w]


def _best_phase(analysis: Analysis, stack: list[Layer], grid: tuple[int, int] | None, nodes: int,
                profile: DeviceProfile, outputs: tuple[str, ...] = (), link_bps: float = CLUSTER_LINK_BPS,
                times: NodeTimes | None = None) -> StackPhase | None:
    """The stack's fastest grid whose tiles fit a node on their own (fewer tiles on a tie); None if none does. Of
    several stacks in turn each tries grids of at most 3 tiles a node (more only add halos at these depths)."""
    phases = [_phase(analysis, stack, rows, cols, nodes, profile, outputs, link_bps, times)
              for rows, cols in _grids(grid, stack, outputs, max(4, 3 * nodes))]
    fitting = [p for p in phases if p.param_bytes + p.grid.max_tile_peak_bytes <= profile.usable_ram_bytes]
    return min(fitting, key=lambda p: (round(p.phase_s + p.transfer_s, 9), len(p.grid.tiles)), default=None)


def _several_stacks(analysis: Analysis, where: StackEnds, ends: list[int], grid: tuple[int, int] | None,
                    nodes: int, profile: DeviceProfile, counts: range, link_bps: float = CLUSTER_LINK_BPS,
                    phase: dict[tuple[int, int], StackPhase | None] | None = None, times: NodeTimes | None = None
                    ) -> list[list[StackPhase]]:
    """The best split of `where.layers[:ends[-1]]` into k stacks ending at `ends` (where the map shrinks; the last
    is the split's end), for each k in `counts`: a dynamic programme over the ends, each stack in its best grid,
    handing on the maps still needed after it. `phase` keeps each stack's best phase by its (start, end) between
    calls with the same other arguments."""
    chain = list(where.layers)
    points = [0, *ends]
    phase = {} if phase is None else phase
    # best[k][e]: the fastest k stacks covering chain[:e], as (tiles phase, stacks)
    best: list[dict[int, tuple[float, list[StackPhase]]]] = [{0: (0.0, [])}]
    for k in range(1, max(counts) + 1):
        best.append({})
        for e in ends:
            for s in (p for p in points if p < e and p in best[k - 1]):
                if where.spans_client_step(s, e):
                    continue
                if (s, e) not in phase:
                    phase[(s, e)] = _with_step(analysis, profile, where.step_before(s), _best_phase(
                        analysis, chain[s:e], grid, nodes, profile, where.outputs(s, e), link_bps, times))
                this = phase[(s, e)]
                if this is None:
                    continue
                before_s, before = best[k - 1][s]
                total = before_s + this.total_s + STITCH_ROUND_TRIP_S
                if e not in best[k] or total < best[k][e][0]:
                    best[k][e] = (total, [*before, this])
    return [best[k][ends[-1]][1] for k in counts if k < len(best) and ends[-1] in best[k]]


def plan_tiles(analysis: Analysis, nodes: int, profile: DeviceProfile, grid: tuple[int, int] | None = None,
               until: str | None = None, stacks: int | None = None, fc_split: str = "time",
               cluster_link_bps: float = CLUSTER_LINK_BPS) -> TilePlan:
    """The tile plan for `nodes` nodes of `profile`: the grid (every stack's), the depth and the number of stacks
    given, or the best predicted (None = auto). `fc_split`: "time" splits a fully connected layer of the remainder
    by output neurons across the nodes where that is predicted faster, or where it does not fit a node;
    "memory" only where it does not fit. The tiles' bytes travel between the client and the nodes at
    `cluster_link_bps` (bits per second)."""
    if cluster_link_bps <= 0:
        raise SplitnnError("--cluster-link must be a positive bandwidth, e.g. 1Gbit")
    if nodes < 1:
        raise SplitnnError("--nodes must be at least 1")
    if fc_split not in FC_SPLITS:
        raise SplitnnError(f"--fc-split '{fc_split}' must be one of {', '.join(FC_SPLITS)}")
    if stacks is not None and stacks < 1:
        raise SplitnnError("--stacks must be at least 1, or auto")
    if grid is not None and min(grid) < 1:
        raise SplitnnError(f"--grid {grid[0]}x{grid[1]} must have at least one row and one column, e.g. 3x3")
    region = tileable_region(analysis.graph, analysis.nodes)
    full = fused_stack(analysis.graph, analysis.nodes, until, region) if until is not None else \
        _deepest(analysis, region)
    where = stack_ends(analysis.graph, region, len(full))
    ends = _ends(where, full)
    depths = [len(full)] if until is not None else ends
    plans = []
    refused: SplitnnError | None = None
    phases: dict[tuple[int, int], StackPhase | None] = {}  # each stack's best phase, by its first and end layer
    times = NodeTimes(analysis, profile)
    for depth in depths:
        stack, outputs = full[:depth], where.outputs(0, depth)
        if stacks in (None, 1) and not where.spans_client_step(0, depth):  # one stack: every grid, on its own
            for rows, cols in _grids(grid, stack, outputs):
                try:
                    phase = _phase(analysis, stack, rows, cols, nodes, profile, outputs, cluster_link_bps, times)
                    plans.append(_candidate(analysis, [phase], nodes, profile, fc_split, times))
                except SplitnnError as exc:  # a remainder layer no set of nodes can hold at this depth
                    refused = exc
        inner = [p for p in ends if p < depth] + [depth]  # where a stack may end
        if stacks is None:
            counts = range(2, len(inner) + 1)  # every number of stacks the ends allow
        else:
            counts = range(stacks, stacks + 1) if stacks > 1 else range(0)
        for split in (_several_stacks(analysis, where, inner, grid, nodes, profile, counts, cluster_link_bps, phases,
                                      times) if counts else []):
            try:
                plans.append(_candidate(analysis, split, nodes, profile, fc_split, times))
            except SplitnnError as exc:
                refused = exc
    return replace(_chosen(plans, refused, full, grid, stacks, profile), unpriced=unpriced_ops(analysis.graph),
                   coverage=tile_coverage(analysis.graph, analysis.nodes, region), cluster_link_bps=cluster_link_bps)


def _deepest(analysis: Analysis, region: Any) -> list[Layer]:
    """The region's layers up to its last point where a stack may end (stack_region.stack_ends)."""
    where = stack_ends(analysis.graph, region)
    if not where.ends:
        return fused_stack(analysis.graph, analysis.nodes, None, region)  # says why there is no stack
    return list(region.layers[:where.ends[-1]])


def _ends(where: StackEnds, full: list[Layer]) -> list[int]:
    """Where the stacks of `full` may end: after a layer that shrinks the map, and at its end; at most MAX_ENDS,
    spread evenly over its MACs."""
    steps = {step.at for step in where.client_steps if step.at < len(full)}  # stacks end at each
    ends = [p for p in where.ends if p < len(full) and (_shrinks(full[p - 1]) or p in steps)] + [len(full)]
    if len(ends) - len(steps) <= MAX_ENDS:
        return ends
    done, total = [], 0
    for layer in full:
        total += layer.macs
        done.append(total)
    picked = {min(ends, key=lambda p: abs(done[p - 1] - total * k / MAX_ENDS)) for k in range(1, MAX_ENDS)}
    return sorted(picked | steps | {len(full)})


def _shrinks(layer: Layer) -> bool:
    """Whether `layer` makes the map smaller (a pooling layer, a strided convolution): where a stack may end."""
    return layer.out_shape[2] * layer.out_shape[3] < layer.in_shape[2] * layer.in_shape[3]


def _chosen(plans: list[TilePlan], refused: SplitnnError | None, full: list[Layer], grid: tuple[int, int] | None,
            stacks: int | None, profile: DeviceProfile) -> TilePlan:
    """The fastest plan that fits a node (fewer stacks, then fewer tiles, then a deeper stack on a tie), or why
    there is none."""
    if not plans and refused is not None:
        raise refused
    if not plans and stacks is not None and stacks > 1:
        raise SplitnnError(f"the fused stack cannot be cut into {stacks} stacks: stacks end where the map shrinks "
                           f"({sum(_shrinks(layer) for layer in full)} layers here); use fewer "
                           "--stacks, or a later --fuse-until")
    if not plans and grid is not None:
        out = full[-1].out_shape
        raise SplitnnError(f"a {grid[0]}x{grid[1]} grid is finer than the stack's output ({out[2]}x{out[3]}): "
                           "use a coarser --grid or an earlier --fuse-until")
    if not plans:  # every grid was tried: not expected, as a 1x1 grid always fits the map
        raise SplitnnError("no tile plan could be made of the fused stack: use an earlier --fuse-until")
    fitting = [p for p in plans if p.node_memory_bytes <= profile.usable_ram_bytes]
    if not fitting:
        smallest = min(plans, key=lambda p: p.node_memory_bytes)
        raise SplitnnError(
            f"no tile fits a node of '{profile.name}': the smallest need is {smallest.node_memory_bytes:,} B "
            f"({smallest.grid.rows}x{smallest.grid.cols} grid: {smallest.stack_param_bytes:,} B of weights + "
            f"{smallest.grid.max_tile_peak_bytes:,} B of activations) against {profile.usable_ram_bytes:,} B usable; "
            "use a finer --grid, an earlier --fuse-until, or a node profile with more RAM")
    return min(fitting, key=lambda p: (round(p.makespan_s, 9), len(p.stacks), len(p.grid.tiles),
                                       -sum(len(s.stack) for s in p.stacks)))

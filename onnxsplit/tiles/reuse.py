"""Reuse of the overlaps between tiles (DeepThings' data reuse), in checkerboard form.

Without reuse every tile computes, at every layer, all it needs for its own
output, so the borders it shares with its neighbours are computed twice (the
redundant MACs). With reuse the tiles run in two phases:
- first phase: tiles whose row + column is even run as before, and also
  return every unit's output (see below) over the region they computed;
- second phase: the other tiles, whose four neighbours are all first-phase
  tiles, run unit by unit. For a unit's output the tile needs the region N
  (what it computes without reuse); its first-phase neighbours already
  computed the strip of N on their side (the neighbour in the same grid row
  covers the same rows, the one in the same column the same columns: the
  geometry is separable), so what is left is a rectangle C, possibly empty.
  The tile computes only C, from inputs assembled out of its own earlier
  units' outputs, its neighbours' outputs and its crops of the stack's inputs.
The second phase waits for its neighbours, so reuse trades parallelism and
data movement for MACs; the MACs saved are reported.

A unit is a layer and the pointwise layers after it that read nothing but
that unit's tensors (SiLU as x * Sigmoid(x), an unfolded HardSwish), run as
one graph. Units form the stack's graph, branches included: a residual Add
or a Concat is a unit that reads the outputs of several earlier units, and
each of those is assembled over what the Add reads. Where a unit's inner
tensor is also read outside it, every layer is a unit of its own.

Why every piece exists: a unit input t read over R = back(C) lies within the
tile's own region N_t (N_t is the union of what t's readers need), and N_t
is covered by the tile's own C_t and its neighbours' N_t.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from splitnn.onnxsplit.artifacts.reuse_records import ReuseRecord, ReuseTile, UnitWork
from splitnn.onnxsplit.tiles.geometry import (
    WHOLE_VECTOR,
    Layer,
    Region,
    Tile,
    TileGrid,
    bounding_box,
    crop,
    in_memory,
    layer_reads,
    part_macs,
    paste,
)


@dataclass(frozen=True)
class Unit:
    """Layers a second-phase tile runs as one graph (see the module doc)."""

    members: tuple[int, ...]  # indices into the stack, in order
    first: Layer
    last: Layer

    @property
    def maps(self) -> tuple[str, ...]:
        """The maps the unit reads (its first layer's), each assembled over the same region."""
        return tuple(dict.fromkeys(name for name in self.first.data_inputs if name not in self.first.broadcast))

    @property
    def vectors(self) -> tuple[str, ...]:
        """The whole-map vectors the unit reads whole (a squeeze-and-excitation block's)."""
        return tuple(dict.fromkeys(self.first.broadcast))

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.last.all_outputs


def reuse_units(stack: list[Layer], outputs: tuple[str, ...]) -> list[Unit]:
    """The stack's layers as units (see the module doc); `outputs`: the stack's outputs."""
    groups: list[list[int]] = []
    made: set[str] = set()
    for i, layer in enumerate(stack):
        pointwise = layer.window is None and layer.scale == (1, 1) and not layer.broadcast
        if groups and pointwise and all(name in made for name in layer.data_inputs):
            groups[-1].append(i)
            made.update(layer.all_outputs)
            continue
        groups.append([i])
        made = set(layer.all_outputs)
    if not _hands_on_last_only(stack, groups, outputs):
        groups = [[i] for i in range(len(stack))]
    return [Unit(tuple(group), stack[group[0]], stack[group[-1]]) for group in groups]


def _hands_on_last_only(stack: list[Layer], groups: list[list[int]], outputs: tuple[str, ...]) -> bool:
    """Whether every tensor read outside its unit, or handed on by the stack, is its unit's last layer's."""
    unit_of = {name: k for k, group in enumerate(groups) for i in group for name in stack[i].all_outputs}
    handed = {name for group in groups for name in stack[group[-1]].all_outputs}
    read_outside = {name for k, group in enumerate(groups) for i in group for name in stack[i].data_inputs
                    if name in unit_of and unit_of[name] != k}
    return (read_outside | set(outputs)) <= handed


def first_phase(tile: Tile) -> bool:
    return (tile.row + tile.col) % 2 == 0


def neighbours(grid: TileGrid, tile: Tile) -> list[Tile]:
    """The first-phase tiles left, right, above and below `tile` (those that exist)."""
    by_position = {(t.row, t.col): t for t in grid.tiles}
    around = [(tile.row, tile.col - 1), (tile.row, tile.col + 1), (tile.row - 1, tile.col), (tile.row + 1, tile.col)]
    return [by_position[p] for p in around if p in by_position]


def unit_work(grid: TileGrid, units: list[Unit], tile: Tile) -> tuple[UnitWork, ...]:
    """Per unit, the rectangle a second-phase tile still computes and what it reads for it."""
    near = {(n.row - tile.row, n.col - tile.col): n for n in neighbours(grid, tile)}
    works = []
    for unit in units:
        last = unit.members[-1]
        y0, y1, x0, x1 = tile.layers[last].output_region
        if (0, -1) in near:
            x0 = max(x0, near[(0, -1)].layers[last].output_region[3])
        if (0, 1) in near:
            x1 = min(x1, near[(0, 1)].layers[last].output_region[2])
        if (-1, 0) in near:
            y0 = max(y0, near[(-1, 0)].layers[last].output_region[1])
        if (1, 0) in near:
            y1 = min(y1, near[(1, 0)].layers[last].output_region[0])
        if y0 >= y1 or x0 >= x1:
            works.append(UnitWork(unit.maps, unit.vectors, unit.outputs))
            continue
        reads, pads, computed = layer_reads(unit.first, (y0, y1, x0, x1))
        works.append(UnitWork(unit.maps, unit.vectors, unit.outputs, (y0, y1, x0, x1), reads, pads, computed))
    return tuple(works)


def reuse_tiles(grid: TileGrid, units: list[Unit]) -> list[ReuseTile]:
    """Every tile's reuse task data, in the grid's order."""
    tensors = tuple(name for unit in units for name in unit.outputs)
    producer = {name: unit.members[-1] for unit in units for name in unit.outputs}
    outputs_at = tuple(tensors.index(name) for name in grid.output_names)
    layouts = {name: grid.stack[producer[name]].out_layout for name in tensors}
    layouts.update({name: grid.input_layout(name) for name in grid.inputs})
    records = []
    for tile in grid.tiles:
        regions = tuple(tile.layers[producer[name]].output_region for name in tensors)
        cells = tile.output_regions or (tile.output_region,)
        if first_phase(tile):
            records.append(ReuseTile(tile.id, True, tensors, regions, outputs_at, cells, layouts))
            continue
        works = unit_work(grid, units, tile)
        reads: dict[str, Region] = {}
        for work in works:
            for name in (*work.maps, *work.vectors):
                if name in grid.inputs and work.reads is not None:
                    region = WHOLE_VECTOR if name in work.vectors else work.reads
                    reads[name] = bounding_box(reads.get(name), region)
        near = {str(n.id): tuple(n.layers[producer[name]].output_region for name in tensors)
                for n in neighbours(grid, tile)}
        records.append(ReuseTile(tile.id, False, tensors, regions, outputs_at, cells, layouts, works, reads, near))
    return records


def reuse_macs(grid: TileGrid, units: list[Unit], records: list[ReuseTile]) -> int:
    """MACs of the tiles with reuse (`records`: reuse_tiles' for `units`): first-phase tiles in full, second-phase
    tiles only what they compute (a unit's first layer over what it computes, the pointwise layers after it over
    its rectangle)."""
    total = 0
    for tile, record in zip(grid.tiles, records):
        if record.first_phase:
            total += tile.macs
            continue
        for unit, work in zip(units, record.units):
            if work.compute is None:
                continue
            assert work.reads is not None
            total += part_macs(unit.first, work.reads, work.computed or work.compute)
            total += sum(part_macs(grid.stack[i], work.compute, work.compute) for i in unit.members[1:])
    return total


def assemble(region: Region, pieces: list[tuple[Region, np.ndarray]], layout: str = "NCHW") -> np.ndarray:
    """The tensor over `region` (held in `layout`), copied from `pieces` (region, data) that together cover it."""
    y0, y1, x0, x1 = region
    sample = pieces[0][1]
    channels = sample.shape[3] if layout == "NHWC" else sample.shape[1]
    out = np.empty(in_memory((1, channels, y1 - y0, x1 - x0), layout), dtype=sample.dtype)
    covered = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for (py0, py1, px0, px1), data in pieces:
        a0, a1, b0, b1 = max(y0, py0), min(y1, py1), max(x0, px0), min(x1, px1)
        if a0 >= a1 or b0 >= b1:
            continue
        part = crop(data, (a0 - py0, a1 - py0, b0 - px0, b1 - px0), layout)
        paste(out, (a0 - y0, a1 - y0, b0 - x0, b1 - x0), part, layout)
        covered[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = True
    if not covered.all():
        raise AssertionError(f"region {region} is not covered by its pieces: the reuse geometry is wrong")
    return out


def _within(inner: Region, outer: Region) -> Region:
    """`inner` in the coordinates of a tensor held over `outer`."""
    return (inner[0] - outer[0], inner[1] - outer[0], inner[2] - outer[2], inner[3] - outer[2])


def first_phase_outputs(tile: ReuseTile, every_unit: list[np.ndarray]) -> list[np.ndarray]:
    """A first-phase tile's cell of each stack output, cut from its every-unit outputs."""
    return [crop(every_unit[at], _within(cell, tile.regions[at]), tile.layouts[tile.tensors[at]])
            for at, cell in zip(tile.outputs_at, tile.cells)]


RunUnit = Callable[[int, dict[str, np.ndarray]], list[np.ndarray]]


def run_second_phase(tile: ReuseTile, crops: dict[str, np.ndarray], run_unit: RunUnit,
                     neighbour_outputs: dict[int, list[np.ndarray]]) -> list[np.ndarray]:
    """A second-phase tile's cell of each stack output, unit by unit: computing only its rectangles, reading the
    rest from its first-phase neighbours' every-unit outputs (`neighbour_outputs[id]`, in `tile.tensors`' order).

    `crops[name]`: stack input `name` over `tile.input_regions[name]`; `run_unit(index, feeds)` runs unit
    `index` of this tile's plan and returns its outputs.
    """
    pieces: dict[str, list[tuple[Region, np.ndarray]]] = {
        name: [(tile.input_regions[name], data)] for name, data in crops.items()}
    for neighbour, regions in tile.neighbours.items():
        for name, region, data in zip(tile.tensors, regions, neighbour_outputs[int(neighbour)]):
            pieces.setdefault(name, []).append((region, data))
    for index, work in enumerate(tile.units):
        if work.compute is None or work.reads is None:
            continue
        feeds = {name: assemble(work.reads, pieces[name], tile.layouts[name]) for name in work.maps}
        feeds.update({name: pieces[name][0][1] for name in work.vectors})
        for name, value in zip(work.outputs, run_unit(index, feeds)):
            pieces.setdefault(name, []).append((work.compute, value))
    return [assemble(cell, pieces[tile.tensors[at]], tile.layouts[tile.tensors[at]])
            for at, cell in zip(tile.outputs_at, tile.cells)]


def second_phase_crops(tile: ReuseTile, pool: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A second-phase tile's crop of each stack input it reads, from the maps in `pool`."""
    return {name: crop(pool[name], region, tile.layouts[name]) for name, region in tile.input_regions.items()}


def stack_reuse_tiles(reuse: ReuseRecord) -> dict[int, ReuseTile]:
    """A stack's reuse record's tiles by id (none without reuse)."""
    return {int(k): v for k, v in reuse.tiles.items()} if reuse.enabled else {}

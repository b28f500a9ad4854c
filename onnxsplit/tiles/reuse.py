"""Reuse of the overlaps between tiles (DeepThings' data reuse), in checkerboard form.

Without reuse every tile computes, at every layer, all it needs for its own
output, so the borders it shares with its neighbours are computed twice (the
redundant MACs). With reuse the tiles run in two phases:
- first phase: tiles whose row + column is even run as before, and return
  every layer's output (not only the last);
- second phase: the other tiles, whose four neighbours are all first-phase
  tiles, run layer by layer. At layer l a second-phase tile needs the region
  N_l (what it needs without reuse); a first-phase neighbour already computed
  the strip of N_l on its side (the neighbour in the same grid row covers the
  same rows, the one in the same column the same columns, so what is left is
  a rectangle C_l, possibly empty). The tile computes only C_l, from an input
  assembled out of its own previous layer and its neighbours' outputs.
The second phase waits for its neighbours, so reuse trades parallelism and
data movement for MACs; the MACs saved are reported.

"Layer by layer" is unit by unit where the stack branches only inside a
unit: a layer and the pointwise layers after it that read nothing but that
unit's tensors (SiLU as x * Sigmoid(x), an unfolded HardSwish) run as one
unit (`reuse_units`). A stack whose branches span units (a residual block, a
split) has no such chain, and reuse is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from splitnn.onnxsplit.tiles.geometry import Layer, Region, Tile, TileGrid, TileLayer, _back, crop, in_memory, paste


@dataclass(frozen=True)
class ReuseLayer:
    compute: Region | None  # what the second-phase tile computes at this layer (None: its neighbours cover all)
    input_region: Region | None  # the layer input that needs
    pads: tuple[int, int, int, int]


@dataclass(frozen=True)
class ReuseUnits:
    """A stack as a chain of units (see the module doc)."""

    grid: TileGrid  # the units as its layers, each tile's parts per unit
    members: tuple[tuple[Layer, ...], ...]  # the stack's layers in each unit, in order


def _unit_groups(stack: list[Layer]) -> list[list[int]] | None:
    """The stack's layers (indices) grouped into units, or None where they do not form a chain of units."""
    groups: list[list[int]] = []
    made: set[str] = set()
    for i, layer in enumerate(stack):
        if len(layer.all_outputs) != 1:
            return None
        pointwise = layer.window is None and layer.scale == (1, 1)
        if groups and pointwise and all(name in made for name in layer.data_inputs):
            groups[-1].append(i)
            made.add(layer.output)
            continue
        before = stack[groups[-1][-1]].output if groups else stack[0].input
        if layer.data_inputs != (before,):
            return None
        groups.append([i])
        made = {layer.output}
    return groups


def reuse_units(grid: TileGrid) -> ReuseUnits | None:
    """`grid`'s stack as a chain of units, with each tile's parts per unit; None where it is no such chain."""
    groups = _unit_groups(grid.stack) if not grid.outputs else None
    if groups is None:
        return None
    units = []
    for group in groups:
        first, last = grid.stack[group[0]], grid.stack[group[-1]]
        units.append(Layer(first.index, first.name, first.op_type, first.window, first.input, last.output,
                           first.in_shape, last.out_shape, sum(grid.stack[i].macs for i in group),
                           max(grid.stack[i].itemsize for i in group), first.in_layout, out_layout=last.out_layout))
    tiles = []
    for tile in grid.tiles:
        parts = tuple(TileLayer(tile.layers[g[0]].input_region, tile.layers[g[-1]].output_region, tile.layers[g[0]].pads)
                      for g in groups)
        tiles.append(Tile(tile.id, tile.row, tile.col, tile.input_region, tile.output_region, parts, tile.macs,
                          tile.peak_bytes))
    return ReuseUnits(TileGrid(units, grid.rows, grid.cols, tiles),
                      tuple(tuple(grid.stack[i] for i in group) for group in groups))


def first_phase(tile: Tile) -> bool:
    return (tile.row + tile.col) % 2 == 0


def neighbours(grid: TileGrid, tile: Tile) -> list[Tile]:
    """The first-phase tiles left, right, above and below `tile` (those that exist)."""
    by_position = {(t.row, t.col): t for t in grid.tiles}
    around = [(tile.row, tile.col - 1), (tile.row, tile.col + 1), (tile.row - 1, tile.col), (tile.row + 1, tile.col)]
    return [by_position[p] for p in around if p in by_position]


def second_phase_layers(grid: TileGrid, tile: Tile) -> list[ReuseLayer]:
    """Per layer, the rectangle a second-phase tile still computes and the input region it reads."""
    layers = []
    near = {(n.row - tile.row, n.col - tile.col): n for n in neighbours(grid, tile)}
    for index, (layer, part) in enumerate(zip(grid.stack, tile.layers)):
        y0, y1, x0, x1 = part.output_region
        if (0, -1) in near:
            x0 = max(x0, near[(0, -1)].layers[index].output_region[3])
        if (0, 1) in near:
            x1 = min(x1, near[(0, 1)].layers[index].output_region[2])
        if (-1, 0) in near:
            y0 = max(y0, near[(-1, 0)].layers[index].output_region[1])
        if (1, 0) in near:
            y1 = min(y1, near[(1, 0)].layers[index].output_region[0])
        if y0 >= y1 or x0 >= x1:
            layers.append(ReuseLayer(None, None, (0, 0, 0, 0)))
            continue
        _, _, in_h, in_w = layer.in_shape
        (iy0, iy1), top, bottom = _back(layer.window, (y0, y1), in_h, 0)
        (ix0, ix1), left, right = _back(layer.window, (x0, x1), in_w, 1)
        layers.append(ReuseLayer((y0, y1, x0, x1), (iy0, iy1, ix0, ix1), (top, left, bottom, right)))
    return layers


def reuse_macs(grid: TileGrid) -> int:
    """MACs of the tiles with reuse: first-phase tiles in full, second-phase tiles only what they compute."""
    total = 0
    for tile in grid.tiles:
        if first_phase(tile):
            total += tile.macs
            continue
        for layer, reuse in zip(grid.stack, second_phase_layers(grid, tile)):
            if reuse.compute is not None:
                y0, y1, x0, x1 = reuse.compute
                total += round(layer.macs * (y1 - y0) * (x1 - x0) / (layer.out_shape[2] * layer.out_shape[3]))
    return total


def assemble(region: Region, channels: int, dtype: Any, pieces: list[tuple[Region, np.ndarray]],
             layout: str = "NCHW") -> np.ndarray:
    """The tensor over `region` (held in `layout`), copied from `pieces` (region, data) that together cover it."""
    y0, y1, x0, x1 = region
    out = np.empty(in_memory((1, channels, y1 - y0, x1 - x0), layout), dtype=dtype)
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


def second_phase_data(grid: TileGrid, tile: Tile) -> dict[str, Any]:
    """What a second-phase task needs, as plain data (it may run on another machine): per layer the
    rectangle computed, its input region and channels; the neighbours' per-layer output regions."""
    return {
        "id": tile.id,
        "output_region": list(tile.output_region),
        "layers": [{"compute": list(r.compute) if r.compute else None,
                    "input_region": list(r.input_region) if r.input_region else None,
                    "channels": layer.in_shape[1], "layout": layer.in_layout}
                   for layer, r in zip(grid.stack, second_phase_layers(grid, tile))],
        "neighbours": {n.id: [list(part.output_region) for part in n.layers] for n in neighbours(grid, tile)},
    }


def run_second_phase(data: dict[str, Any], first_input: np.ndarray, run_layer: Any,
                     neighbour_outputs: dict[int, list[np.ndarray]]) -> np.ndarray:
    """A second-phase tile's output, layer by layer: computing only its rectangles, reading the rest from its
    first-phase neighbours' per-layer outputs (`neighbour_outputs[id][layer]`, over their output regions).

    `first_input` is the image over the first computed layer's input region; `run_layer(index, x)` runs
    layer `index` of this tile's plan on `x`.
    """
    own: tuple[Region, np.ndarray] | None = None
    for index, layer in enumerate(data["layers"]):
        if layer["compute"] is None:
            own = None
            continue
        if index == 0:
            x = first_input
        else:
            pieces = [(tuple(regions[index - 1]), neighbour_outputs[int(n)][index - 1])
                      for n, regions in data["neighbours"].items()]
            if own is not None:
                pieces.append(own)
            x = assemble(tuple(layer["input_region"]), layer["channels"], first_input.dtype, pieces,  # type: ignore[arg-type]
                         layer.get("layout", "NCHW"))
        own = (tuple(layer["compute"]), run_layer(index, x))  # type: ignore[assignment]
    assert own is not None and list(own[0]) == data["output_region"]
    return own[1]


def first_layer_input(data: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """The image over the region the second-phase tile's first layer reads (empty if it computes nothing there)."""
    region = data["layers"][0]["input_region"]
    return crop(image, region if region is not None else (0, 0, 0, 0), data["layers"][0].get("layout", "NCHW"))

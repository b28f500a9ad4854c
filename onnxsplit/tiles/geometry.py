"""Fused tile partitioning (DeepThings, IEEE TCAD 2018): the geometry.

A fused stack (tiles/stack_region.py builds it) is a region of the graph
between the maps it reads and the maps it hands on (one each, or several: a
feature pyramid's levels) in which every layer is local
in space: windows (Conv, MaxPool, AveragePool, and Pad, a window of one),
layers that treat every position alike (activations, per-channel arithmetic,
quantization), layers that mix channels only (Concat, Split, a Slice of
channels, layout Transposes), and branches that meet again inside it
(residual Add, SiLU's x * Sigmoid(x), unfolded HardSwish, CSP blocks). A
window with auto_pad SAME (TF/Keras 'same' padding) gets the explicit pads the
ONNX rule gives for the whole image, and each tile keeps those at its true
borders only.

The stack's output is split into an R x C grid. Each tile's regions are found
by walking back through the stack's layers in reverse order: a layer computes
the bounding box of what its readers need of its output, and needs of each
input what the general window formula gives: output rows [o0, o1) of a
window with kernel k, stride s, padding p (before) and dilation d read input
rows

    [o0 * s - p,  (o1 - 1) * s - p + (k - 1) * d + 1)

clipped to the input (a ConvTranspose, read backwards, needs every input i
with i * s + k * d - p in the range for some tap k, and is computed on them
without padding, then cropped). Whatever falls outside the input is padding, and only
there (at the true image border) is padding applied: a tile's window keeps
pads only on the sides where its region was clipped. Where a tensor is
computed over more than one reader needs (two branches with different
halos), the tile graph crops it for that reader (tiles/tile_graphs.py).
Neighbouring tiles' regions overlap, and the overlap is computed twice: the
redundant MACs.

Regions are (y0, y1, x0, x1) in the tensor's own rows and columns, whatever
its layout in memory ("NCHW" or "NHWC", per tensor).

This is written by hand because no library does tile geometry for ONNX
graphs; the rule it must satisfy is tested: the stitched tiles equal the
stack's output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitnn.onnxsplit.core.errors import SplitnnError

@dataclass(frozen=True)
class Window:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right (ONNX order: begins then ends)
    dilation: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return ((kh - 1) * dh + 1, (kw - 1) * dw + 1)


@dataclass(frozen=True)
class Layer:
    """One node of the fused stack."""

    index: int  # node index in the Graph
    name: str
    op_type: str
    window: Window | None  # None: every output position reads the same input position
    input: str  # the first data input
    output: str  # the first output
    in_shape: tuple[int, int, int, int]  # of `input`: N, C, H, W (the logical order, whatever the layout in memory)
    out_shape: tuple[int, int, int, int]
    macs: int  # of the whole layer
    itemsize: int
    in_layout: str = "NCHW"  # of `input` in memory: "NCHW" or "NHWC"
    inputs: tuple[str, ...] = ()  # every data input (a residual Add, a Concat: several); () means (input,)
    outputs: tuple[str, ...] = ()  # every output (a Split: several); () means (output,)
    out_layout: str = "NCHW"
    in_channels: int = 0  # of all data inputs together (0: in_shape's)
    scale: tuple[int, int] = (1, 1)  # a Resize's whole factors on H and W
    halo: int = 0  # a Resize's: input rows and columns read beyond the nearest ones (interpolation, rounding)
    broadcast: tuple[str, ...] = ()  # data inputs read whole by every tile: whole-map vectors (H and W are 1)

    @property
    def data_inputs(self) -> tuple[str, ...]:
        return self.inputs or (self.input,)

    @property
    def all_outputs(self) -> tuple[str, ...]:
        return self.outputs or (self.output,)


Region = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)
WHOLE_VECTOR: Region = (0, 1, 0, 1)  # what every tile reads of a whole-map vector (H and W are 1): all of it


def crop(tensor: np.ndarray, region: Region | list[int], layout: str = "NCHW") -> np.ndarray:
    """`region` (rows, columns) of an NCHW or NHWC tensor, contiguous (as onnxruntime and Dask want it)."""
    y0, y1, x0, x1 = region
    if layout == "NHWC":
        return np.ascontiguousarray(tensor[:, y0:y1, x0:x1, :])
    return np.ascontiguousarray(tensor[:, :, y0:y1, x0:x1])


def paste(canvas: np.ndarray, region: Region | list[int], values: np.ndarray, layout: str = "NCHW") -> None:
    """Write `values` at `region` of an NCHW or NHWC `canvas` (the inverse of crop)."""
    y0, y1, x0, x1 = region
    if layout == "NHWC":
        canvas[:, y0:y1, x0:x1, :] = values
    else:
        canvas[:, :, y0:y1, x0:x1] = values


def in_memory(shape: tuple[int, int, int, int], layout: str) -> tuple[int, int, int, int]:
    """A logical N, C, H, W shape in the order `layout` holds it."""
    n, c, h, w = shape
    return (n, h, w, c) if layout == "NHWC" else (n, c, h, w)


def tile_crops(tile: Any, pool: dict[str, np.ndarray], names: tuple[str, ...], layouts: tuple[str, ...]
               ) -> list[np.ndarray]:
    """A tile's crop of each stack input `names` (held in `layouts`) from the maps in `pool`; `tile` is a Tile or a
    plan file's TileRecord (the first input's region alone where the stack reads one map)."""
    regions = tile.input_regions or (tile.input_region,)
    return [crop(pool[name], region, layout) for name, region, layout in zip(names, regions, layouts)]


def paste_tile(canvases: dict[str, np.ndarray], tile: Any, values: list[np.ndarray], names: tuple[str, ...],
               shapes: tuple[tuple[int, int, int, int], ...], layouts: tuple[str, ...]) -> None:
    """A tile's outputs `values` into the stitched maps `canvases` of stack outputs `names` (logical `shapes`, held
    in `layouts`), each made on the first tile; `tile` is a Tile or a plan file's TileRecord."""
    regions = tile.output_regions or (tile.output_region,)
    for name, shape, layout, region, value in zip(names, shapes, layouts, regions, values):
        if name not in canvases:
            canvases[name] = np.empty(in_memory(shape, layout), dtype=value.dtype)
        paste(canvases[name], region, value, layout)


@dataclass(frozen=True)
class TileLayer:
    """What one layer computes for one tile."""

    input_region: Region  # of the first data input: what the layer reads
    output_region: Region  # what the layer computes: the bounding box of its readers' needs
    pads: tuple[int, int, int, int]  # applied at this tile's true borders only
    input_regions: tuple[Region, ...] = ()  # of every data input (several: the same region); () means (input_region,)
    computed_region: Region | None = None  # a Resize's whole output on its input region, cropped to output_region


@dataclass(frozen=True)
class Tile:
    id: int
    row: int
    col: int
    input_region: Region  # of the stack's input
    output_region: Region  # of the stack's output
    layers: tuple[TileLayer, ...]
    macs: int
    peak_bytes: int  # largest input + output of one layer, for this tile
    output_regions: tuple[Region, ...] = ()  # of every output of a stack with several, in TileGrid.outputs' order
    input_regions: tuple[Region, ...] = ()  # of every input of a stack with several, in TileGrid.inputs' order

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "col": self.col, "input_region": list(self.input_region),
                "output_region": list(self.output_region), "macs": self.macs, "peak_bytes": self.peak_bytes,
                "pads": [list(layer.pads) for layer in self.layers],
                "output_regions": [list(region) for region in self.output_regions],
                "input_regions": [list(region) for region in self.input_regions]}


@dataclass
class TileGrid:
    """A stack split into a grid, with its totals."""

    stack: list[Layer]
    rows: int
    cols: int
    tiles: list[Tile] = field(default_factory=list)
    outputs: tuple[str, ...] = ()  # a stack with several outputs (a feature pyramid's maps); () means the last layer's

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.outputs or (self.stack[-1].output,)

    @property
    def inputs(self) -> tuple[str, ...]:
        return stack_inputs(self.stack)

    def output_shape(self, name: str) -> tuple[int, int, int, int]:
        """The logical N, C, H, W of stack output `name`."""
        return next(layer.out_shape for layer in self.stack if layer.output == name)

    def output_layout(self, name: str) -> str:
        return next(layer.out_layout for layer in self.stack if layer.output == name)

    def input_layout(self, name: str) -> str:
        return next(layer.in_layout for layer in self.stack if name in layer.data_inputs)

    def tile_feeds(self, tile: Tile, pool: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`tile`'s crop of each stack input, from the maps in `pool` (the image, and maps stitched before)."""
        layouts = tuple(self.input_layout(name) for name in self.inputs)
        return dict(zip(self.inputs, tile_crops(tile, pool, self.inputs, layouts)))

    def stitch_all(self, outputs: dict[int, list[np.ndarray]]) -> dict[str, np.ndarray]:
        """Every stack output assembled from the tiles' outputs (`outputs[tile id]`, in output_names' order)."""
        names = self.output_names
        shapes = tuple(self.output_shape(name) for name in names)
        layouts = tuple(self.output_layout(name) for name in names)
        result: dict[str, np.ndarray] = {}
        for tile in self.tiles:
            paste_tile(result, tile, outputs[tile.id], names, shapes, layouts)
        return result

    @property
    def stack_macs(self) -> int:
        return sum(layer.macs for layer in self.stack)

    @property
    def tiled_macs(self) -> int:
        return sum(tile.macs for tile in self.tiles)

    @property
    def redundant_macs_ratio(self) -> float:
        """Extra MACs of the tiles over the stack's own, as a fraction of the stack's."""
        return self.tiled_macs / self.stack_macs - 1 if self.stack_macs else 0.0

    @property
    def stack_peak_bytes(self) -> int:
        return max(_bytes(layer.in_shape, layer.itemsize) * max(layer.in_channels, layer.in_shape[1]) // layer.in_shape[1]
                   + _bytes(layer.out_shape, layer.itemsize) * len(layer.all_outputs) for layer in self.stack)

    @property
    def max_tile_peak_bytes(self) -> int:
        return max(tile.peak_bytes for tile in self.tiles)


def _bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


def split_range(length: int, parts: int) -> list[tuple[int, int]]:
    """`length` split into `parts` contiguous ranges, sizes differing by at most one."""
    if parts > length:
        raise SplitnnError(f"cannot split {length} rows or columns into {parts} tiles: use a smaller grid")
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _back(window: Window | None, out: tuple[int, int], size: int, axis: int) -> tuple[tuple[int, int], int, int]:
    """Input range for output range `out` along `axis` (0: rows, 1: columns), and the pads it needs (before, after)."""
    if window is None:
        return out, 0, 0
    stride, pad, extent = window.stride[axis], window.pads[axis], window.extent[axis]
    start = out[0] * stride - pad
    end = (out[1] - 1) * stride - pad + extent
    return (max(start, 0), min(end, size)), max(-start, 0), max(end - size, 0)


def bounding_box(a: Region | None, b: Region) -> Region:
    """The smallest region holding `a` (None: nothing yet) and `b`."""
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def _area(region: Region) -> int:
    return (region[1] - region[0]) * (region[3] - region[2])


def _resized(layer: Layer, region: Region) -> tuple[Region, Region]:
    """What a Resize by whole factors reads for output `region` (the nearest input rows and columns, and `halo`
    more on each side, within the input), and the output it then computes: the factor times that input, which
    holds `region` (the tile graph crops it)."""
    _, _, in_h, in_w = layer.in_shape
    (fy, fx), halo = layer.scale, layer.halo
    y0, y1 = max(region[0] // fy - halo, 0), min((region[1] - 1) // fy + 1 + halo, in_h)
    x0, x1 = max(region[2] // fx - halo, 0), min((region[3] - 1) // fx + 1 + halo, in_w)
    return (y0, y1, x0, x1), (y0 * fy, y1 * fy, x0 * fx, x1 * fx)


def _deconvolved(layer: Layer, region: Region) -> tuple[Region, Region]:
    """What a ConvTranspose reads for output `region` (every input that reaches it through some kernel tap), and
    the output it computes on that input with no padding, in the layer's output coordinates (it holds `region`:
    the tile graph crops it). Output o gets input i through tap k where o = i * stride + k * dilation - pad."""
    assert layer.window is not None
    _, _, in_h, in_w = layer.in_shape
    reads, computed = [], []
    for axis, (o0, o1), size in ((0, region[:2], in_h), (1, region[2:], in_w)):
        stride, pad, extent = layer.window.stride[axis], layer.window.pads[axis], layer.window.extent[axis]
        i0 = max(-(-(o0 + pad - extent + 1) // stride), 0)
        i1 = min((o1 - 1 + pad) // stride + 1, size)
        reads.append((i0, i1))
        computed.append((i0 * stride - pad, (i1 - 1) * stride + extent - pad))
    return ((reads[0][0], reads[0][1], reads[1][0], reads[1][1]),
            (computed[0][0], computed[0][1], computed[1][0], computed[1][1]))


def layer_reads(layer: Layer, region: Region) -> tuple[Region, tuple[int, int, int, int], Region | None]:
    """What `layer` reads of each of its maps to compute output `region`, the pads it applies there (top, left,
    bottom, right: at the true borders only), and the output it computes where that is more than `region` (a
    Resize or ConvTranspose, cut to `region` in the tile graph; None where it computes `region` itself)."""
    if layer.scale != (1, 1) or layer.op_type == "ConvTranspose":
        reads, computed = _resized(layer, region) if layer.scale != (1, 1) else _deconvolved(layer, region)
        return reads, (0, 0, 0, 0), computed if computed != region else None
    _, _, in_h, in_w = layer.in_shape
    (iy0, iy1), top, bottom = _back(layer.window, (region[0], region[1]), in_h, 0)
    (ix0, ix1), left, right = _back(layer.window, (region[2], region[3]), in_w, 1)
    return (iy0, iy1, ix0, ix1), (top, left, bottom, right), None


def part_macs(layer: Layer, reads: Region, computed: Region) -> int:
    """`layer`'s MACs on a part of the map: reading `reads` and computing `computed` (a ConvTranspose's are in
    proportion to the input it reads, every other layer's to the output it computes)."""
    if layer.op_type == "ConvTranspose":
        return round(layer.macs * _area(reads) / (layer.in_shape[2] * layer.in_shape[3]))
    return round(layer.macs * _area(computed) / (layer.out_shape[2] * layer.out_shape[3]))


def stack_inputs(stack: list[Layer]) -> tuple[str, ...]:
    """The tensors the stack's layers read that it does not compute, in order of first use (the first layer's
    input first), the whole-map vectors after the maps."""
    made = {name for layer in stack for name in layer.all_outputs}
    vectors = {name for layer in stack for name in layer.broadcast}
    read = dict.fromkeys(name for layer in stack for name in layer.data_inputs if name not in made)
    return tuple([name for name in read if name not in vectors] + [name for name in read if name in vectors])


def _tile_layers(stack: list[Layer], cells: dict[str, Region]) -> tuple[list[TileLayer], dict[str, Region]]:
    """Every layer's part of the tile whose outputs are `cells`, in stack order, and the region of the stack's
    input the tile reads: each layer computes the bounding box of what its readers need."""
    needs: dict[str, Region] = dict(cells)
    parts: list[TileLayer] = []
    for layer in reversed(stack):
        region: Region | None = None
        for name in layer.all_outputs:
            if name in needs:
                region = bounding_box(region, needs[name])
        if region is None:  # read by nothing the tile computes: computed whole, as the model does
            region = (0, layer.out_shape[2], 0, layer.out_shape[3])
        reads, pads, computed = layer_reads(layer, region)
        each = tuple(WHOLE_VECTOR if name in layer.broadcast else reads for name in layer.data_inputs)
        for name, read in zip(layer.data_inputs, each):
            needs[name] = bounding_box(needs.get(name), read)
        parts.append(TileLayer(reads, region, pads, each if len(each) > 1 else (), computed))
    parts.reverse()
    return parts, needs


def tile_grid(stack: list[Layer], rows: int, cols: int, outputs: tuple[str, ...] = ()) -> TileGrid:
    """Split the stack's output (each of `outputs`, where it has several, by the same grid) into rows x cols tiles
    and walk each back to the input."""
    grid = TileGrid(stack, rows, cols, outputs=outputs if outputs != (stack[-1].output,) else ())
    names = grid.output_names
    ranges = {name: (split_range(grid.output_shape(name)[2], rows), split_range(grid.output_shape(name)[3], cols))
              for name in names}
    for r in range(rows):
        for c in range(cols):
            cells = {name: (ys[r][0], ys[r][1], xs[c][0], xs[c][1]) for name, (ys, xs) in ranges.items()}
            layers, needs = _tile_layers(stack, cells)
            inputs = grid.inputs
            region = needs[inputs[0]]
            y0, y1, x0, x1 = cells[names[0]]
            macs = 0
            peak = 0
            for layer, part in zip(stack, layers):
                out_area = _area(part.computed_region or part.output_region)
                macs += part_macs(layer, part.input_region, part.computed_region or part.output_region)
                channels_in = layer.in_channels or layer.in_shape[1]
                out_channels = layer.out_shape[1] * len(layer.all_outputs)
                peak = max(peak, (channels_in * _area(part.input_region) + out_channels * out_area) * layer.itemsize)
            grid.tiles.append(Tile(len(grid.tiles), r, c, region, (y0, y1, x0, x1), tuple(layers), macs, peak,
                                   tuple(cells[name] for name in names) if grid.outputs else (),
                                   tuple(needs[name] for name in inputs) if len(inputs) > 1 else ()))
    return grid

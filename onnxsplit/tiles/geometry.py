"""Fused tile partitioning (DeepThings, IEEE TCAD 2018): the geometry.

The fused stack is the chain of spatial layers from the model's image input
up to a cut: Conv, MaxPool, AveragePool (windows) and layers that treat every
position alike (BatchNormalization, activations). It stops before anything
that mixes positions (Resize, Flatten, Gemm, global pooling), before a
branch (a tensor read twice, as in a skip connection), and before windows it
cannot tile exactly (ceil_mode, groups of a transposed convolution). A
window with auto_pad SAME (TF/Keras 'same' padding) gets the explicit pads the
ONNX rule gives for the whole image, and each tile keeps those at its true
borders only.

The stack's output is split into an R x C grid. Each tile's input region is
found by walking back through the stack, layer by layer, with the general
window formula: output rows [o0, o1) of a window with kernel k, stride s,
padding p (before) and dilation d read input rows

    [o0 * s - p,  (o1 - 1) * s - p + (k - 1) * d + 1)

clipped to the input. Whatever falls outside the input is padding, and only
there (at the true image border) is padding applied: a tile's window keeps
pads only on the sides where its region was clipped. Neighbouring tiles'
regions overlap, and the overlap is computed twice: the redundant MACs.

This is written by hand because no library does tile geometry for ONNX
graphs; the rule it must satisfy is tested: the stitched tiles equal the
stack's output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitnn.cost_models.registry import NodeCost
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph, Node

WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})
POINTWISE_OPS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus",
    "BatchNormalization", "Identity", "Dropout", "LRN",  # LRN mixes channels, never positions
    "Cast", "Add", "Sub", "Mul", "Div",  # with constant operands that do not vary over positions (checked)
})
# Binary ops whose constant operand must not vary over H and W (an unfolded batch norm's per-channel Sub/Mul/Add).
ELEMENTWISE_WITH_CONSTANT = frozenset({"Add", "Sub", "Mul", "Div", "PRelu"})


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right (ONNX order: begins then ends)
    dilation: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))  # type: ignore[return-value]


@dataclass(frozen=True)
class Layer:
    """One node of the fused stack."""

    index: int  # node index in the Graph
    name: str
    op_type: str
    window: Window | None  # None: pointwise
    input: str
    output: str
    in_shape: tuple[int, int, int, int]  # N, C, H, W (the logical order, whatever the layout in memory)
    out_shape: tuple[int, int, int, int]
    macs: int  # of the whole layer
    itemsize: int
    in_layout: str = "NCHW"  # "NHWC" for a TF/Keras input read by the layout Transpose that starts the stack


Region = tuple[int, int, int, int]
# The Transpose that TF/Keras exports put first: NHWC input to NCHW.
NHWC_TO_NCHW = [0, 3, 1, 2]  # y0, y1, x0, x1 (half-open)


def crop(tensor: np.ndarray, region: Region | list[int], layout: str = "NCHW") -> np.ndarray:
    """`region` (rows, columns) of an NCHW or NHWC tensor, contiguous (as onnxruntime and Dask want it)."""
    y0, y1, x0, x1 = region
    if layout == "NHWC":
        return np.ascontiguousarray(tensor[:, y0:y1, x0:x1, :])
    return np.ascontiguousarray(tensor[:, :, y0:y1, x0:x1])


def paste(canvas: np.ndarray, region: Region | list[int], values: np.ndarray) -> None:
    """Write `values` at `region` of an NCHW `canvas` (the inverse of crop)."""
    y0, y1, x0, x1 = region
    canvas[:, :, y0:y1, x0:x1] = values


def stitch(tiles: list[Tile], outputs: dict[int, np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """The stack's output assembled from the tiles' outputs (each at its output region)."""
    result = np.empty(shape, dtype=dtype)
    for tile in tiles:
        paste(result, tile.output_region, outputs[tile.id])
    return result


@dataclass(frozen=True)
class TileLayer:
    """What one layer computes for one tile."""

    input_region: Region
    output_region: Region
    pads: tuple[int, int, int, int]  # applied at this tile's true borders only


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

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "col": self.col, "input_region": list(self.input_region),
                "output_region": list(self.output_region), "macs": self.macs, "peak_bytes": self.peak_bytes,
                "pads": [list(layer.pads) for layer in self.layers]}


@dataclass
class TileGrid:
    """A stack split into a grid, with its totals."""

    stack: list[Layer]
    rows: int
    cols: int
    tiles: list[Tile] = field(default_factory=list)

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
        return max(_bytes(layer.in_shape, layer.itemsize) + _bytes(layer.out_shape, layer.itemsize) for layer in self.stack)

    @property
    def max_tile_peak_bytes(self) -> int:
        return max(tile.peak_bytes for tile in self.tiles)


def _bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


def _pair(values: Any, default: int) -> tuple[int, int]:
    values = list(values) if values is not None else [default, default]
    return (int(values[0]), int(values[1]))


def _auto_pad(node: Node) -> str:
    value = node.attrs.get("auto_pad", "NOTSET")
    return value.decode() if isinstance(value, bytes) else value


def _window(node: Node, in_hw: tuple[int, int]) -> Window:
    """The node's window with explicit pads: auto_pad SAME_UPPER/SAME_LOWER (as TF/Keras exports write
    'same' padding) resolved against the whole input's size `in_hw`, by the ONNX rule."""
    attrs = node.attrs
    kernel = _pair(attrs.get("kernel_shape"), 1)
    stride = _pair(attrs.get("strides"), 1)
    dilation = _pair(attrs.get("dilations"), 1)
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    auto_pad = _auto_pad(node)
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for axis in range(2):
            extent = (kernel[axis] - 1) * dilation[axis] + 1
            total = max(0, (math.ceil(in_hw[axis] / stride[axis]) - 1) * stride[axis] + extent - in_hw[axis])
            small, large = total // 2, total - total // 2
            pads[axis], pads[axis + 2] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    return Window(kernel, stride, (pads[0], pads[1], pads[2], pads[3]), dilation)


def why_not_tileable(node: Node) -> str:
    """Empty when the node can be part of a fused stack, else why not."""
    if node.op_type in POINTWISE_OPS:
        return ""
    if node.op_type == "Transpose":
        return "" if list(node.attrs.get("perm", [])) == NHWC_TO_NCHW else f"{node.name} is not the NHWC-to-NCHW layout transpose"
    if node.op_type not in WINDOW_OPS:
        return f"{node.op_type} is not a spatial layer (it mixes positions or is not supported in a tile)"
    if _auto_pad(node) not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        return f"{node.name} uses auto_pad={_auto_pad(node)}"
    if int(node.attrs.get("ceil_mode", 0)):
        return f"{node.name} uses ceil_mode"
    if node.op_type == "Conv" and "kernel_shape" not in node.attrs:
        return f"{node.name} has no kernel_shape attribute"
    if len(node.attrs.get("kernel_shape", [1, 1])) != 2:
        return f"{node.name} is not a 2-D window"
    return ""


def fused_stack(graph: Graph, costs: list[NodeCost], until: str | None = None) -> list[Layer]:
    """The chain of tileable layers from the image input, up to tensor `until` (default: as far as it goes)."""
    images = [n for n in graph.inputs if len(graph.info(n).shape) == 4]
    if len(images) != 1:
        raise SplitnnError(f"a tile plan needs one NCHW image input; the model has {len(images)} 4-D inputs")
    current = images[0]
    if graph.info(current).shape[0] != 1:
        raise SplitnnError(f"input '{current}' has batch {graph.info(current).shape[0]}: tile plans run one image (batch 1)")
    stack: list[Layer] = []
    while current != until:
        readers = [i for i in graph.consumers.get(current, ()) if not graph.nodes[i].is_constant]
        swish = _swish(graph, current, readers) if stack and current not in graph.outputs else None
        if swish is not None:  # SiLU written out, x * Sigmoid(x): a diamond that stays per position
            for node in swish:
                stack.append(_pointwise_layer(graph, costs, node, current))
            current = swish[-1].outputs[0]
            continue
        if len(readers) != 1 or current in graph.outputs and stack:
            break  # a branch (or an output read outside the stack): the stack ends here
        node = graph.nodes[readers[0]]
        data_inputs = [n for n in node.inputs if n and not graph.is_constant(n)]
        if data_inputs != [current] or why_not_tileable(node) or len(node.outputs) < 1:
            break
        if node.op_type in ELEMENTWISE_WITH_CONSTANT and not _constant_operands_per_channel(graph, node):
            break
        if node.op_type == "Transpose" and stack:
            break  # only as the first layer: the input's layout
        layout = "NHWC" if node.op_type == "Transpose" else "NCHW"
        output = node.outputs[0]
        if len(graph.info(output).shape) != 4:
            break
        itemsize = graph.info(output).nbytes // max(graph.info(output).elements, 1)
        in_shape = graph.info(current).shape
        if layout == "NHWC":
            in_shape = (in_shape[0], in_shape[3], in_shape[1], in_shape[2])
        window = _window(node, (in_shape[2], in_shape[3])) if node.op_type in WINDOW_OPS else None
        stack.append(Layer(node.index, node.name, node.op_type, window,
                           current, output, in_shape, graph.info(output).shape,  # type: ignore[arg-type]
                           costs[node.index].macs, itemsize, layout))
        current = output
    if until is not None and current != until:
        where = f"the stack stops at '{current}'" if stack else "no layer after the input can be tiled"
        names = [layer.output for layer in stack]
        raise SplitnnError(f"--fuse-until '{until}' is not on the fused stack ({where}); choose one of "
                           f"{', '.join(names[-6:]) or '(none)'}")
    if not stack:
        first = next((graph.nodes[i] for i in graph.consumers.get(images[0], ())), None)
        reason = why_not_tileable(first) if first is not None else "the input is not read"
        raise SplitnnError(f"no fused stack: the first layer after '{images[0]}' cannot be tiled ({reason})")
    return stack


def _swish(graph: Graph, current: str, readers: list[int]) -> list[Node] | None:
    """[Sigmoid, Mul] when `current`'s two readers are x -> Sigmoid -> Mul(x, Sigmoid(x)) (SiLU as PyTorch exports
    write it), else None."""
    if len(readers) != 2:
        return None
    nodes = sorted((graph.nodes[i] for i in readers), key=lambda n: n.op_type != "Sigmoid")
    sigmoid, mul = nodes
    if sigmoid.op_type != "Sigmoid" or mul.op_type != "Mul" or len(sigmoid.outputs) != 1:
        return None
    gate = sigmoid.outputs[0]
    if sorted(mul.inputs) != sorted([current, gate]) or graph.consumers.get(gate, ()) != (mul.index,):
        return None
    if len(graph.info(mul.outputs[0]).shape) != 4:
        return None
    return [sigmoid, mul]


def _pointwise_layer(graph: Graph, costs: list[NodeCost], node: Node, current: str) -> Layer:
    output = node.outputs[0]
    itemsize = graph.info(output).nbytes // max(graph.info(output).elements, 1)
    return Layer(node.index, node.name, node.op_type, None, current, output, graph.info(current).shape,  # type: ignore[arg-type]
                 graph.info(output).shape, costs[node.index].macs, itemsize)  # type: ignore[arg-type]


def _constant_operands_per_channel(graph: Graph, node: Node) -> bool:
    """Whether every constant operand of `node` is the same at every position (its last two axes, H and W once
    broadcast, are 1), so a tile can apply it as it is."""
    for name in node.inputs:
        if name and graph.is_constant(name):
            shape = graph.shape(name)
            if any(dim != 1 for dim in shape[-2:]):
                return False
    return True


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


def tile_grid(stack: list[Layer], rows: int, cols: int) -> TileGrid:
    """Split the stack's output into rows x cols tiles and walk each back to the input."""
    _, _, out_h, out_w = stack[-1].out_shape
    grid = TileGrid(stack, rows, cols)
    for r, (y0, y1) in enumerate(split_range(out_h, rows)):
        for c, (x0, x1) in enumerate(split_range(out_w, cols)):
            region: Region = (y0, y1, x0, x1)
            layers: list[TileLayer] = []
            for layer in reversed(stack):
                _, _, in_h, in_w = layer.in_shape
                (iy0, iy1), top, bottom = _back(layer.window, (region[0], region[1]), in_h, 0)
                (ix0, ix1), left, right = _back(layer.window, (region[2], region[3]), in_w, 1)
                layers.append(TileLayer((iy0, iy1, ix0, ix1), region, (top, left, bottom, right)))
                region = (iy0, iy1, ix0, ix1)
            layers.reverse()
            macs = 0
            peak = 0
            for layer, part in zip(stack, layers):
                out_area = (part.output_region[1] - part.output_region[0]) * (part.output_region[3] - part.output_region[2])
                macs += round(layer.macs * out_area / (layer.out_shape[2] * layer.out_shape[3]))
                in_area = (part.input_region[1] - part.input_region[0]) * (part.input_region[3] - part.input_region[2])
                peak = max(peak, (layer.in_shape[1] * in_area + layer.out_shape[1] * out_area) * layer.itemsize)
            grid.tiles.append(Tile(len(grid.tiles), r, c, region, (y0, y1, x0, x1), tuple(layers), macs, peak))
    return grid

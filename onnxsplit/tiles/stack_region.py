"""Which layers of a real export can be tiled, and where a fused stack may end (issue 31, items 1-3).

The tileable region grows from the image input in topological order: a node
joins when every tensor it computes from (its constants aside) is already in
the region and it is local in space (tiles/geometry.py lists the kinds). A
node that reads the region but cannot join is a stop, recorded with its op
and why: one that mixes the whole map (global pooling, a Reshape or Flatten
of the map, a MatMul, an RNN over the width) or one not supported in a tile.

Each tensor keeps its layout ("NCHW" or "NHWC"): an NHWC image (Keras,
tf2onnx, keras2onnx) is followed through Casts and other pointwise layers to
the Transpose that makes it NCHW for the convolutions, and a layout Transpose
may come anywhere (tf2onnx writes them around single layers). The image's own
layout is the one of the two under which the region holds more MACs.

A squeeze-and-excitation block (a global pooling, small convolutions on its
1x1 result, a gate, then a Mul of the map by that vector) does not end the
region: the nodes that compute the vector from the whole map are client
steps. The stack before them hands on the map, the client computes the
vector from the stitched map, and the layer that multiplies by it joins the
next stack, whose every tile reads the whole vector (its H and W are 1).

A stack is the region's layers up to a point of the topological order where
every live tensor (computed before it and read after it, or outside the
region) is a map a region layer computed as its first output, at most
MAX_STACK_OUTPUTS of them (`stack_ends`): the stack hands them all on.
Residual blocks, SiLU and unfolded HardSwish diamonds, CSP splits and
concats lie inside one stack; a feature pyramid's levels are handed on
together. `--fuse-until` names a point where one tensor alone is live (a
boundary).

Written by hand because no library says which ONNX operators are local in
space; the rule it must satisfy (the stitched tiles equal the stack's output)
is tested on every corpus CNN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import numpy_helper

from splitnn.cost_models.registry import NodeCost
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph, Node
from splitnn.onnxsplit.tiles.geometry import Layer, Window

WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})
# ConvTranspose is a window too, read backwards (geometry._deconvolved): output o gets input i through tap k
# where o = i * stride + k * dilation - pad.
UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu", "Softplus",
    "Softsign", "Mish", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round",
    "Sign", "ThresholdedRelu", "BatchNormalization", "Identity", "Dropout", "Cast",
    "LRN",  # mixes channels, never positions
    "QuantizeLinear", "DequantizeLinear",  # per tensor or per channel (checked)
})
# Elementwise with broadcasting: their constant operands must not vary over H and W (an unfolded batch norm's
# per-channel Sub/Mul/Add); two data operands must cover the same positions (a residual Add, x * Sigmoid(x)).
BINARY_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", "Sum", "Mean"})
CHANNEL_OPS = frozenset({"Concat", "Split"})  # along the channel axis (checked)
# Ops that read every position of the map to compute each output: where the region ends for good.
WHOLE_MAP_OPS = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Reshape", "Gemm", "MatMul", "Squeeze",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceProd", "LSTM", "GRU", "RNN",
    "InstanceNormalization", "LayerNormalization", "Softmax", "LogSoftmax", "Shape", "NonMaxSuppression", "TopK",
    "ArgMax", "ArgMin",
})
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class StackStop:
    """A node that reads the tileable region and cannot join it."""

    node: str
    op_type: str
    reason: str
    whole_map: bool  # it mixes the whole map (the region ends here for good)
    after_layers: int  # how many region layers come before it in topological order


@dataclass(frozen=True)
class ClientStep:
    """Nodes the client runs between two stacks, before region layer `at`: a squeeze-and-excitation vector computed
    from the stitched map (a global pooling, then layers on its 1x1 result), read whole by every tile after it."""

    at: int  # the position in the region's layers it runs before (where one stack ends and the next begins)
    indices: tuple[int, ...]  # graph node indices, in topological order
    outputs: tuple[str, ...]  # the vectors read after it (by later layers, steps or the remainder; H and W are 1)
    names: tuple[str, ...] = ()  # the nodes' names


@dataclass(frozen=True)
class TileableRegion:
    """Every tileable layer reachable from the image, in topological order, where a stack may end, and the stops."""

    image: str
    layout: str  # the image's
    layers: tuple[Layer, ...]
    boundaries: tuple[int, ...]  # p: layers[:p] is a stack whose output layers[p - 1].output is the one live tensor
    stops: tuple[StackStop, ...]
    client_steps: tuple[ClientStep, ...] = ()  # in order of `at`

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


def logical(shape: tuple[int, ...], layout: str) -> tuple[int, int, int, int]:
    """N, C, H, W of a 4-D tensor held in `layout`."""
    n, a, b, c = shape
    return (n, c, a, b) if layout == "NHWC" else (n, a, b, c)


def _spatial_axes(layout: str) -> tuple[int, int]:
    return (1, 2) if layout == "NHWC" else (2, 3)


def _channel_axis(layout: str) -> int:
    return 3 if layout == "NHWC" else 1


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


def constant_value(graph: Graph, name: str) -> np.ndarray | None:
    """The value of a constant tensor held in the model (an initializer with its bytes, or a Constant node's);
    None where it is not at hand (external data, or computed by static nodes)."""
    for tensor in graph.model.graph.initializer:
        if tensor.name == name:
            external = tensor.data_location == 1 or any(e.key == "location" for e in tensor.external_data)
            return None if external else numpy_helper.to_array(tensor)
    index = graph.producer.get(name)
    node = graph.nodes[index] if index is not None else None
    if node is not None and node.op_type == "Constant" and "value" in node.attrs:
        value = node.attrs["value"]
        return value if isinstance(value, np.ndarray) else numpy_helper.to_array(value)
    return None


def _window_problem(node: Node, layout: str) -> str:
    """Why window `node` cannot be tiled ('' if it can)."""
    if layout != "NCHW":
        return f"{node.name} ({node.op_type}) reads an {layout} tensor"
    if _auto_pad(node) not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        return f"{node.name} uses auto_pad={_auto_pad(node)}"
    if int(node.attrs.get("ceil_mode", 0)):
        return f"{node.name} uses ceil_mode"
    if node.op_type in ("Conv", "ConvTranspose") and "kernel_shape" not in node.attrs:
        return f"{node.name} has no kernel_shape attribute"
    if len(node.attrs.get("kernel_shape", [1, 1])) != 2:
        return f"{node.name} is not a 2-D window"
    return ""


def _pad_window(graph: Graph, node: Node, layout: str) -> Window | str:
    """A constant Pad of H and W as a window of one (the pads at true borders only, as a Conv's)."""
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        return f"{node.name} pads in mode '{mode}'"
    if "pads" in node.attrs:
        pads = np.asarray(node.attrs["pads"])
    else:
        value = constant_value(graph, node.inputs[1]) if len(node.inputs) > 1 else None
        if value is None:
            return f"{node.name}'s pads are not a constant held in the model"
        pads = np.asarray(value)
    if len(node.inputs) > 3 and node.inputs[3]:
        return f"{node.name} pads chosen axes"
    if pads.size != 8 or (pads < 0).any():
        return f"{node.name} crops or pads other than 4-D"
    h, w = _spatial_axes(layout)
    if any(int(pads[i]) or int(pads[i + 4]) for i in range(4) if i not in (h, w)):
        return f"{node.name} pads the batch or the channels"
    return Window((1, 1), (1, 1), (int(pads[h]), int(pads[w]), int(pads[h + 4]), int(pads[w + 4])), (1, 1))


def _transposed(layout: str, perm: list[int]) -> str | None:
    """The layout a Transpose by `perm` gives a tensor in `layout`; None unless NCHW or NHWC."""
    result = "".join(layout[i] for i in perm) if len(perm) == 4 else ""
    return result if result in LAYOUTS else None


def _constants_per_channel(graph: Graph, node: Node, layout: str) -> bool:
    """Whether every constant operand of `node` is the same at every position (its H and W are 1 once broadcast to
    the tensor's rank), so a tile can apply it as it is."""
    h, w = _spatial_axes(layout)
    for name in node.inputs:
        if name and graph.is_constant(name):
            shape = (1,) * (4 - len(graph.shape(name))) + tuple(graph.shape(name))
            if len(shape) != 4 or shape[h] != 1 or shape[w] != 1:
                return False
    return True


def _axis_problem(node: Node, layout: str, rank: int = 4) -> str:
    """Why a Concat/Split or a per-channel quantization of `node` is not along the channel axis ('' if it is)."""
    default = 1 if node.op_type in ("QuantizeLinear", "DequantizeLinear") else 0
    axis = int(node.attrs.get("axis", default)) % rank
    if node.op_type in ("QuantizeLinear", "DequantizeLinear") and axis != _channel_axis(layout):
        return ""  # per tensor unless its scale has more than one value (checked by the caller)
    return "" if axis == _channel_axis(layout) else f"{node.name} ({node.op_type}) works along axis {axis}, a spatial one"


def _quantization_problem(graph: Graph, node: Node, layout: str) -> str:
    scale = node.inputs[1] if len(node.inputs) > 1 else ""
    if scale and math.prod(graph.shape(scale)) > 1:
        return _axis_problem(node, layout) or ("" if int(node.attrs.get("axis", 1)) % 4 == _channel_axis(layout)
                                               else f"{node.name} quantizes along a spatial axis")
    return ""


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def resize_factors(graph: Graph, node: Node, layout: str) -> tuple[tuple[int, int], int] | str:
    """A Resize's (or Upsample's) whole factors on H and W and the halo it reads, or why a tile cannot hold it:
    its output must move with its input (whole factors, a coordinate mode that shifts with the crop), so that a
    tile's resized crop, cut to what is needed, equals the whole map's."""
    mode = _text(node.attrs.get("mode"), "nearest")
    default_ctm = "half_pixel" if node.op_type == "Resize" and graph.opset >= 11 else "asymmetric"
    ctm = _text(node.attrs.get("coordinate_transformation_mode"), default_ctm)
    if ctm not in ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn"):
        return f"resizes with coordinate_transformation_mode '{ctm}' (the crop would move its samples)"
    if mode not in ("nearest", "linear", "cubic") or node.attrs.get("antialias") or node.attrs.get("axes"):
        return f"resizes in mode '{mode}' or with options a tile does not reproduce"
    in_shape, out_shape = graph.shape(node.inputs[0]), graph.info(node.outputs[0]).shape
    h, w = _spatial_axes(layout)
    factors = []
    for axis in range(4):
        whole, rest = divmod(out_shape[axis], in_shape[axis])
        if rest or (axis not in (h, w) and whole != 1):
            return "resizes by a factor that is not whole, or resizes the batch or the channels"
        factors.append(whole)
    return (factors[h], factors[w]), 2 if mode == "cubic" else 1


def slice_window(graph: Graph, node: Node, layout: str) -> Window | str:
    """A Slice as a window: on H and W, output o reads input start + o * step (a Focus block's strided slices; a
    slice of channels reads every position as it is), or why a tile cannot hold it."""
    rank = len(graph.shape(node.inputs[0]))
    if "starts" in node.attrs:  # before opset 10: attributes, step 1
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes, steps = list(node.attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        values = [constant_value(graph, name) if name else None for name in (list(node.inputs) + ["", "", ""])[1:5]]
        if values[0] is None or values[1] is None or any(v is None and name for v, name in
                                                         zip(values[2:], (list(node.inputs) + ["", ""])[3:5])):
            return "its starts, ends, axes or steps are not constants held in the model"
        starts, ends = [int(v) for v in values[0]], [int(v) for v in values[1]]
        axes = [int(v) for v in values[2]] if values[2] is not None else list(range(len(starts)))
        steps = [int(v) for v in values[3]] if values[3] is not None else [1] * len(starts)
    h, w = _spatial_axes(layout)
    in_shape = graph.shape(node.inputs[0])
    first, stride = {h: 0, w: 0}, {h: 1, w: 1}
    for axis, start, step in zip(axes, starts, steps):
        axis %= rank
        if axis not in (h, w):
            continue
        if step < 1:
            return "slices the map backwards"
        first[axis], stride[axis] = max(start + in_shape[axis], 0) if start < 0 else start, step
    return Window((1, 1), (stride[h], stride[w]), (-first[h], -first[w], 0, 0), (1, 1))


def _transposed_window(node: Node, layout: str) -> Window | str:
    """A ConvTranspose's kernel, stride, pads and dilation, or why a tile cannot hold it: the kernel's extent must
    reach across the stride (a gap between taps leaves positions no tile computes), and nothing may be added past
    the map (output_padding, output_shape, auto_pad). With dilation some positions may still get bias alone;
    the tile computes them as the model does (geometry._deconvolved covers every output of its region)."""
    problem = _window_problem(node, layout)
    if problem:
        return problem
    attrs = node.attrs
    if _auto_pad(node) not in ("NOTSET", "VALID") or "output_shape" in attrs or any(attrs.get("output_padding", [])):
        return f"{node.name} sets auto_pad, output_shape or output_padding"
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    window = Window(_pair(attrs.get("kernel_shape"), 1), _pair(attrs.get("strides"), 1),
                    (pads[0], pads[1], pads[2], pads[3]), _pair(attrs.get("dilations"), 1))
    if any(extent < stride for extent, stride in zip(window.extent, window.stride)):
        return f"{node.name} leaves output positions no input reaches (kernel extent below the stride)"
    return window


def _kind_problem(graph: Graph, node: Node, layout: str) -> tuple[Window | None, str, str]:
    """(window, output layout, why not) for `node` reading tensors in `layout`."""
    op = node.op_type
    if op == "ConvTranspose":
        window = _transposed_window(node, layout)
        return (window, layout, "") if isinstance(window, Window) else (None, layout, window)
    if op in WINDOW_OPS:
        problem = _window_problem(node, layout)
        in_hw = logical(graph.shape(node.inputs[0]), layout)[2:]
        return (None if problem else _window(node, in_hw)), layout, problem
    if op == "Pad":
        window = _pad_window(graph, node, layout)
        return (window, layout, "") if isinstance(window, Window) else (None, layout, window)
    if op == "Transpose":
        out = _transposed(layout, [int(p) for p in node.attrs.get("perm", [])])
        return None, out or layout, "" if out else f"{node.name} is not a layout transpose (NCHW <-> NHWC)"
    if op in CHANNEL_OPS:
        return None, layout, _axis_problem(node, layout)
    if op in ("Resize", "Upsample"):
        factors = resize_factors(graph, node, layout)
        return None, layout, factors if isinstance(factors, str) else ""
    if op == "Slice":
        window = slice_window(graph, node, layout)
        if isinstance(window, str):
            return None, layout, window
        return (None if window.stride == (1, 1) and window.pads == (0, 0, 0, 0) else window), layout, ""
    if op in ("SpaceToDepth", "DepthToSpace"):
        block = int(node.attrs.get("blocksize", 1))
        if layout != "NCHW":
            return None, layout, f"{node.name} ({op}) reads an {layout} tensor"
        return (Window((block, block), (block, block), (0, 0, 0, 0), (1, 1)) if op == "SpaceToDepth" else None,
                layout, "")
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return None, layout, _quantization_problem(graph, node, layout)
    if op in UNARY_OPS:
        return None, layout, ""
    if op in BINARY_OPS:
        ok = _constants_per_channel(graph, node, layout)
        return None, layout, "" if ok else f"{node.name} ({op}) adds a constant that differs from position to position"
    if op in WHOLE_MAP_OPS:
        return None, layout, "mixes the whole map"
    return None, layout, "not supported in a tile yet"


def _join(graph: Graph, costs: list[NodeCost], node: Node, layouts: dict[str, str],
          vectors: dict[str, str] | None = None) -> Layer | str:
    """`node` as a layer of the region whose maps have `layouts` (and whose client steps give the whole-map
    `vectors`, with their layouts), or why it cannot join."""
    vectors = vectors or {}
    data = [n for n in node.inputs if n and not graph.is_constant(n)]
    if node.implicit_inputs or node.domain not in ("", "ai.onnx"):
        return "not supported in a tile yet"
    broadcast = tuple(n for n in data if n in vectors)
    maps = [n for n in data if n not in vectors]
    outside = [n for n in maps if n not in layouts]
    if outside:
        return f"it also reads '{outside[0]}', which is not computed in the tileable region"
    if not maps:
        return "computes from a whole-map vector alone"
    if broadcast and node.op_type not in BINARY_OPS:
        return f"{node.name} ({node.op_type}) reads a whole-map vector, which a tile applies in elementwise layers only"
    layout = layouts[maps[0]]
    if any(layouts[n] != layout for n in maps) or any(vectors[n] != layout for n in broadcast):
        return f"{node.name} reads tensors in different layouts"
    outputs = tuple(o for o in node.outputs if o)
    if any(len(graph.info(o).shape) != 4 for o in outputs):
        return "mixes the whole map" if node.op_type in WHOLE_MAP_OPS else "does not give a 4-D map"
    window, out_layout, problem = _kind_problem(graph, node, layout)
    if problem:
        return problem
    in_shape = logical(graph.shape(maps[0]), layout)
    out_shape = logical(graph.info(outputs[0]).shape, out_layout)
    if len(maps) > 1 and any(logical(graph.shape(n), layout)[2:] != out_shape[2:] for n in maps):
        return f"{node.name} ({node.op_type}) broadcasts one operand over the map"
    scale, halo = (1, 1), 0
    if node.op_type in ("Resize", "Upsample"):
        factors = resize_factors(graph, node, layout)
        if isinstance(factors, str):  # already answered by _kind_problem above
            return factors
        scale, halo = factors
    elif node.op_type == "DepthToSpace":  # output o reads input o // block: a nearest Resize that moves channels
        block = int(node.attrs.get("blocksize", 1))
        scale = (block, block)
    elif window is None and in_shape[2:] != out_shape[2:]:
        return "changes the map's size"
    itemsize = graph.info(outputs[0]).nbytes // max(graph.info(outputs[0]).elements, 1)
    channels = sum(logical(graph.shape(n), layout)[1] for n in maps)
    return Layer(node.index, node.name, node.op_type, window, maps[0], outputs[0], in_shape, out_shape,
                 costs[node.index].macs, max(itemsize, 1), layout, tuple(data), outputs, out_layout, channels,
                 scale, halo, broadcast)


# Nodes that reduce a map to one value per channel (H and W become 1): a squeeze-and-excitation block's start.
VECTOR_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceMax",
                          "ReduceMin", "ReduceSum", "ReduceL2"})


def _vector_layout(graph: Graph, node: Node, layouts: dict[str, str], vectors: dict[str, str]) -> str | None:
    """The layout of the whole-map vectors `node` computes, where it is a client step's node (a pooling of one
    region map to H = W = 1, or a node on such vectors alone giving vectors); None where it is not."""
    data = [n for n in node.inputs if n and not graph.is_constant(n)]
    if not data or node.implicit_inputs or node.domain not in ("", "ai.onnx"):
        return None
    if any(n not in vectors for n in data) and (node.op_type not in VECTOR_POOLS or len(data) != 1
                                                or data[0] not in layouts):
        return None
    layout = vectors.get(data[0]) or layouts[data[0]]
    for name in (o for o in node.outputs if o):
        shape = graph.info(name).shape
        if len(shape) != 4 or logical(shape, layout)[2:] != (1, 1):
            return None
    return layout


def _grow(graph: Graph, costs: list[NodeCost], image: str, layout: str
          ) -> tuple[list[Layer], list[StackStop], list[ClientStep]]:
    """The region's layers, stops and client steps with the image in `layout` (see the module doc)."""
    layouts = {image: layout}
    vectors: dict[str, str] = {}
    layers: list[Layer] = []
    stops: list[tuple[int, StackStop]] = []
    vector_nodes: list[tuple[Node, int]] = []  # with how many layers come before each
    for node in graph.nodes:
        if node.is_constant or not any(n in layouts or n in vectors for n in node.all_inputs):
            continue
        vector_layout = _vector_layout(graph, node, layouts, vectors)
        if vector_layout is not None:
            vector_nodes.append((node, len(layers)))
            vectors.update((name, vector_layout) for name in node.outputs if name)
            continue
        joined = _join(graph, costs, node, layouts, vectors)
        if isinstance(joined, str):
            # past another stop, or on a vector no tile reads: that one is the reason
            if any(n in layouts for n in node.all_inputs) and not joined.startswith("it also reads"):
                stops.append((node.index, StackStop(node.name, node.op_type, joined, node.op_type in WHOLE_MAP_OPS,
                                                    len(layers))))
            continue
        layers.append(joined)
        for name in joined.all_outputs:
            layouts[name] = joined.out_layout
    steps, unused = _client_steps(graph, layers, [node for node, _ in vector_nodes])
    stops += [(node.index, StackStop(node.name, node.op_type, "mixes the whole map", True, before))
              for node, before in vector_nodes if node.index in unused and node.op_type in VECTOR_POOLS]
    return layers, [stop for _, stop in sorted(stops, key=lambda pair: pair[0])], steps


def _client_steps(graph: Graph, layers: list[Layer], vector_nodes: list[Node]) -> tuple[list[ClientStep], set[int]]:
    """The vector nodes grouped by the first region layer that reads what they compute (directly or through other
    vector nodes): each group runs on the client before that layer. Also the indices of the vector nodes no layer
    reads (the poolings among them are the region's stops, as any whole-map layer is)."""
    position = {layer.index: q for q, layer in enumerate(layers)}
    at: dict[int, int] = {}
    for node in reversed(vector_nodes):
        readers = [position.get(i, at.get(i)) for name in node.outputs if name for i in graph.consumers.get(name, ())]
        known = [q for q in readers if q is not None]
        if known:
            at[node.index] = min(known)
    steps = []
    for point in sorted(set(at.values())):
        indices = tuple(node.index for node in vector_nodes if at.get(node.index) == point)
        inside = set(indices)
        outputs = tuple(name for i in indices for name in graph.nodes[i].outputs if name and (
            name in graph.outputs or any(c not in inside for c in graph.consumers.get(name, ()))))
        steps.append(ClientStep(point, indices, outputs, tuple(graph.nodes[i].name for i in indices)))
    return steps, {node.index for node in vector_nodes if node.index not in at}


def tileable_region(graph: Graph, costs: list[NodeCost]) -> TileableRegion:
    """The tileable region from the model's one 4-D image input, in the image's layout (see the module doc)."""
    images = [n for n in graph.inputs if len(graph.info(n).shape) == 4]
    if len(images) != 1:
        raise SplitnnError(f"a tile plan needs one image input (4-D); the model has {len(images)} 4-D inputs")
    image = images[0]
    if graph.info(image).shape[0] != 1:
        raise SplitnnError(f"input '{image}' has batch {graph.info(image).shape[0]}: tile plans run one image (batch 1)")
    best: TileableRegion | None = None
    for layout in LAYOUTS:
        layers, stops, steps = _grow(graph, costs, image, layout)
        live = live_sets(graph, image, layers, steps)
        first_step = steps[0].at if steps else len(layers)  # a stack with one output never spans a client step
        vectors = {name for step in steps for name in step.outputs}  # the client makes them: not the stack's
        boundaries = tuple(p for p in range(1, first_step + 1) if live[p] - vectors == {layers[p - 1].output})
        region = TileableRegion(image, layout, tuple(layers), boundaries, tuple(stops), tuple(steps))
        if best is None or _score(region) > _score(best):
            best = region
    assert best is not None
    return best


def _score(region: TileableRegion) -> tuple[int, int]:
    """A stack's MACs first, then the region's: under the image's true layout its convolutions join."""
    end = region.boundaries[-1] if region.boundaries else 0
    return sum(layer.macs for layer in region.layers[:end]), region.macs


def fused_stack(graph: Graph, costs: list[NodeCost], until: str | None = None,
                region: TileableRegion | None = None) -> list[Layer]:
    """The longest stack of the tileable region with one output (up to tensor `until`, where given): its layers in
    order."""
    region = region or tileable_region(graph, costs)
    ends = {region.layers[p - 1].output: p for p in region.boundaries}
    if until is not None:
        if until not in ends:
            names = list(ends)
            where = f"the stack can end at {', '.join(names[-6:])}" if names else "no stack can be formed"
            raise SplitnnError(f"--fuse-until '{until}' is not on the fused stack at a point where it can end ({where}); "
                               "choose one of those")
        return list(region.layers[:ends[until]])
    if not region.boundaries:
        stop = region.stops[0] if region.stops else None
        reason = f"{stop.node} ({stop.op_type}): {stop.reason}" if stop else "the input is not read by a spatial layer"
        raise SplitnnError(f"no fused stack: nothing after '{region.image}' can be tiled; it stops at {reason}")
    return list(region.layers[:region.boundaries[-1]])


def macs_before_whole_map(graph: Graph, costs: list[NodeCost]) -> tuple[int, str | None]:
    """The MACs of the nodes that come before every layer that mixes the whole map (none of those is behind them),
    and the first such layer's name in topological order (None, and every MAC, where no layer does)."""
    after: set[int] = set()  # the nodes a whole-map layer is behind, and those layers
    first: str | None = None
    for node in graph.nodes:
        if node.is_constant:
            continue
        behind = any(graph.producer.get(name) in after for name in node.all_inputs)
        if node.op_type in WHOLE_MAP_OPS or behind:
            after.add(node.index)
            if first is None and node.op_type in WHOLE_MAP_OPS:
                first = node.name
    return sum(cost.macs for i, cost in enumerate(costs) if i not in after), first


@dataclass(frozen=True)
class TileCoverage:
    """How much of the model tiles can reach, and where the tileable region stops (issue 31, item 3)."""

    model_macs: int
    region_macs: int  # every tileable layer's
    deepest_stack_macs: int  # the longest stack's
    whole_map_node: str | None  # the model's first layer that mixes the whole map (topological order)
    whole_map_op: str | None
    macs_before_whole_map: int  # of the nodes no layer that mixes the whole map is behind
    stops: tuple[StackStop, ...]
    region_layers: int
    deepest_stack_layers: int
    # Where the longest stack ends before the region does: the maps still live after it (a stack hands on at most
    # MAX_STACK_OUTPUTS maps, each computed by a layer of the region).
    live_after_stack: tuple[str, ...] = ()
    client_steps: int = 0  # whole-map vectors the longest stacks go past (the client computes each between two)


def tile_coverage(graph: Graph, costs: list[NodeCost], region: TileableRegion | None = None) -> TileCoverage:
    region = region or tileable_region(graph, costs)
    where = stack_ends(graph, region)
    end = where.ends[-1] if where.ends else 0
    before, first = macs_before_whole_map(graph, costs)
    op = next((n.op_type for n in graph.nodes if n.name == first), None) if first else None
    made = [region.image, *(name for layer in region.layers for name in layer.all_outputs)]
    live = [name for name in made if name in where.live[end + 1]] if 0 < end < len(region.layers) else []
    return TileCoverage(sum(c.macs for c in costs), region.macs, sum(layer.macs for layer in region.layers[:end]),
                        first, op, before, region.stops, len(region.layers), end, tuple(live),
                        len(where.client_steps))


MAX_STACK_OUTPUTS = 4  # the most maps a stack hands on (a feature pyramid's levels and their lateral taps)


def live_sets(graph: Graph, image: str, layers: tuple[Layer, ...] | list[Layer],
              steps: tuple[ClientStep, ...] | list[ClientStep] = ()) -> list[frozenset[str]]:
    """For each position p (0..len(layers)), the tensors computed before p (or the image) and read at p or later
    (or outside `layers`, or a model output). A client step's nodes read at its position, and its outputs are made
    just before it."""
    position = {layer.index: q for q, layer in enumerate(layers)}
    position.update((i, step.at) for step in steps for i in step.indices)
    end = len(layers)
    made_at = [(-1, image), *((q, n) for q, layer in enumerate(layers) for n in layer.all_outputs),
               *((step.at - 1, n) for step in steps for n in step.outputs)]
    spans: list[tuple[int, int, str]] = []
    for made, name in made_at:
        readers = [position.get(i, end) for i in graph.consumers.get(name, ()) if not graph.nodes[i].is_constant]
        last = end if name in graph.outputs else max(readers, default=None)
        if last is not None and last > made:
            spans.append((made + 1, last, name))  # live for p in [made + 1, last]
    result: list[set[str]] = [set() for _ in range(end + 1)]
    for first, last, name in spans:
        for p in range(first, min(last, end) + 1):
            result[p].add(name)
    return [frozenset(s) for s in result]


@dataclass(frozen=True)
class StackEnds:
    """Where stacks of `layers` may end, and what each stack hands on (the maps still needed after it)."""

    image: str
    layers: tuple[Layer, ...]
    live: tuple[frozenset[str], ...]  # per position, as live_sets gives
    ends: tuple[int, ...]  # positions p where a stack layers[s:p] may end (each live map computed by a layer)
    client_steps: tuple[ClientStep, ...] = ()  # those before the last end: every stack ends at each one's `at`

    def outputs(self, start: int, end: int) -> tuple[str, ...]:
        """The maps stack layers[start:end] computes that are still needed after it, in the order they are made."""
        made = [layer.output for layer in self.layers[start:end]]
        return tuple(name for name in made if name in self.live[end])

    def spans_client_step(self, start: int, end: int) -> bool:
        """Whether stack layers[start:end] would hold a client step inside it (it cannot)."""
        return any(start < step.at < end for step in self.client_steps)

    def step_before(self, start: int) -> ClientStep | None:
        """The client step that runs before a stack starting at `start`, if any."""
        return next((step for step in self.client_steps if step.at == start), None)


def stack_ends(graph: Graph, region: TileableRegion, deepest: int | None = None) -> StackEnds:
    """Every position of the region where a stack may end: each tensor live there is the image, a 4-D map that a
    layer computes as its first output, or a client step's vector, and at most MAX_STACK_OUTPUTS of them are maps.
    No stack goes past a client step that cannot run between two stacks (too many maps live there)."""
    layers = region.layers[:deepest] if deepest is not None else region.layers
    steps = tuple(step for step in region.client_steps if step.at < len(layers))
    live = live_sets(graph, region.image, layers, steps)
    firsts = {layer.output for layer in layers}
    vectors = {name for step in steps for name in step.outputs}
    ends = [p for p in range(1, len(layers) + 1)
            if all(n == region.image or n in firsts or n in vectors for n in live[p])
            and 0 < len(live[p] - {region.image} - vectors) <= MAX_STACK_OUTPUTS]
    blocked = next((step.at for step in steps if step.at not in ends), None)
    if blocked is not None:
        ends = [p for p in ends if p < blocked]
    last = ends[-1] if ends else 0
    return StackEnds(region.image, tuple(layers), tuple(live), tuple(ends),
                     tuple(step for step in steps if step.at < last))

"""Each tile's graph: the fused stack's graph cut down to one tile's regions.

The stack's graph (the model's nodes of the stack, on the whole maps) is
copied and each node is given what one tile needs: graph inputs and outputs
of the tile's sizes, pads only at the tile's true borders, Slices where a
layer reads less of a tensor than was computed of it, Resize scales in place
of whole-map sizes, a ConvTranspose computed without padding and cut, strided
Slices that start at the tile's crop. The regions come from tiles/geometry.py.
Written by hand: no library rewrites an ONNX graph for a part of its input.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from splitnn.onnxsplit.tiles.geometry import Layer, Tile, TileLayer, stack_inputs
from splitnn.onnxsplit.tiles.stack_region import WINDOW_OPS


def tile_model(stack_model: onnx.ModelProto, stack: list[Layer], tile: Tile, outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    """The stack's graph run on `tile`'s input regions: input and output sizes of the tile, pads at true borders
    only, and a crop (Slice) wherever a layer reads less of a tensor than was computed of it (two branches with
    different halos), or a stack output was computed over more than the tile's cell (it is also read inside)."""
    model = onnx.ModelProto()
    model.CopyFrom(stack_model)
    graph = model.graph
    inputs, outputs = stack_inputs(stack), outputs or (stack[-1].output,)
    computed = dict(zip(inputs, tile.input_regions or (tile.input_region,)))
    layouts = {name: next(layer.in_layout for layer in stack if name in layer.data_inputs) for name in inputs}
    for value in graph.input:
        if value.name in computed:
            set_hw(value, computed[value.name], layouts[value.name])
    del graph.value_info[:]  # the inner shapes were those of the whole image
    for layer, part in zip(stack, tile.layers):
        for name in layer.all_outputs:
            computed[name], layouts[name] = part.output_region, layer.out_layout
    by_output = {layer.output: (layer, part) for layer, part in zip(stack, tile.layers)}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.output and node.output[0] in by_output:
            layer, part = by_output[node.output[0]]
            nodes.extend(_crops(model, node, layer, part, computed, layouts))
            nodes.extend(fit_to_region(model, node, layer, part))
            continue
        nodes.append(node)
    cells = dict(zip(outputs, tile.output_regions or (tile.output_region,)))
    for value in graph.output:
        if value.name not in cells:
            continue
        name, cell = value.name, cells[value.name]
        if tuple(computed[name]) != tuple(cell):  # also read inside the stack: computed over more than the cell
            nodes.append(_slice(model, name, f"{name}__cell", computed[name], cell, layouts[name]))
            value.name = f"{name}__cell"
        set_hw(value, cell, layouts[name])
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def fit_to_region(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: TileLayer
                  ) -> list[onnx.NodeProto]:
    """`node` (layer `layer` of `model`) made to compute `part.output_region` from its input crop: pads at the true
    borders only, a strided Slice from the crop's first row and column, a Resize by its factors or a ConvTranspose
    without padding, then cut to the region; returns the nodes that take its place."""
    if layer.op_type == "Pad":
        _set_pad_amounts(model, node, part.pads, layer.in_layout)
    elif layer.op_type == "Slice" and layer.window is not None:
        _slice_from_crop(model, node, layer)
    elif layer.op_type in WINDOW_OPS:
        _set_pads(node, part.pads)
    if layer.scale != (1, 1):
        return _resize_in_tile(model, node, layer, part)
    if layer.op_type == "ConvTranspose":
        return _deconvolution_in_tile(model, node, layer, part)
    return [node]


def set_hw(value: onnx.ValueInfoProto, region: Any, layout: str) -> None:
    """Give a graph input or output the height and width of `region`."""
    dims = value.type.tensor_type.shape.dim
    h, w = (1, 2) if layout == "NHWC" else (2, 3)
    dims[h].dim_value, dims[w].dim_value = region[1] - region[0], region[3] - region[2]


def _slice(model: onnx.ModelProto, source: str, target: str, have: Any, need: Any, layout: str) -> onnx.NodeProto:
    """A Slice from `source`, computed over region `have`, to `target` over region `need` (within it)."""
    h, w = (1, 2) if layout == "NHWC" else (2, 3)
    starts, ends = [need[0] - have[0], need[2] - have[2]], [need[1] - have[0], need[3] - have[2]]
    if _opset(model) < 10:  # Slice took attributes then
        return helper.make_node("Slice", [source], [target], name=target, starts=starts, ends=ends, axes=[h, w])
    consts = []
    for label, values in (("starts", starts), ("ends", ends), ("axes", [h, w])):
        model.graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), f"{target}_{label}"))
        consts.append(f"{target}_{label}")
    return helper.make_node("Slice", [source, *consts], [target], name=target)


def _set_pads(node: onnx.NodeProto, pads: tuple[int, int, int, int]) -> None:
    """Give a window node explicit `pads` in place of its own pads or auto_pad (VALID and SAME included: the
    geometry has already turned them into pads for the whole image)."""
    kept = [a for a in node.attribute if a.name not in ("pads", "auto_pad")]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute("pads", list(pads))])


def _opset(model: onnx.ModelProto) -> int:
    return next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), 0)


def _crops(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: Any, computed: dict[str, Any],
           layouts: dict[str, str]) -> list[onnx.NodeProto]:
    """Slices that cut each of `node`'s data inputs down to what `part` reads of it, where more was computed;
    `node` is rewired to read them."""
    slices = []
    for k, (name, reads) in enumerate(zip(layer.data_inputs, part.input_regions or (part.input_region,))):
        if tuple(computed[name]) == tuple(reads):
            continue
        cropped = f"{name}__crop_{node.output[0]}_{k}"
        slices.append(_slice(model, name, cropped, computed[name], reads, layouts[name]))
        for i, read in enumerate(node.input):
            if read == name:
                node.input[i] = cropped
    return slices


def _resize_in_tile(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: TileLayer) -> list[onnx.NodeProto]:
    """A Resize by its factors on the tile's input region (scales, where the model gave sizes for the whole map),
    then cut to what the tile needs of its output (geometry._resized)."""
    h, w = (1, 2) if layer.in_layout == "NHWC" else (2, 3)
    if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
        scales = [1.0] * 4
        scales[h], scales[w] = float(layer.scale[0]), float(layer.scale[1])
        name = f"{node.output[0]}__tile_scales"
        model.graph.initializer.append(numpy_helper.from_array(np.array(scales, np.float32), name))
        del node.input[3]
        node.input[2] = name
    return _cut_to_output(model, node, layer, part, "resized")


def _deconvolution_in_tile(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: Any
                           ) -> list[onnx.NodeProto]:
    """A ConvTranspose on the tile's input region with no padding, then cut to what the tile needs of its output
    (geometry._deconvolved)."""
    _set_pads(node, (0, 0, 0, 0))
    return _cut_to_output(model, node, layer, part, "deconvolved")


def _cut_to_output(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: Any, what: str
                   ) -> list[onnx.NodeProto]:
    """`node`, and where it computes more than the tile needs of its output (`part.computed_region`), a Slice to
    that (`part.output_region`) under the output's own name, the node's output renamed `<output>__<what>`."""
    if part.computed_region is None:
        return [node]
    out = node.output[0]
    node.output[0] = f"{out}__{what}"
    return [node, _slice(model, node.output[0], out, part.computed_region, part.output_region, layer.out_layout)]


def _slice_from_crop(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer) -> None:
    """A Slice of H and W on a tile's crop, which starts at the first row and column it reads: start 0 and no
    end on those axes, the steps kept (stack_region.slice_window)."""
    h, w = (1, 2) if layer.in_layout == "NHWC" else (2, 3)
    rank = 4
    if any(a.name == "starts" for a in node.attribute):  # before opset 10
        attrs = {a.name: list(helper.get_attribute_value(a)) for a in node.attribute}
        axes = attrs.get("axes", list(range(len(attrs["starts"]))))
        starts = [0 if int(a) % rank in (h, w) else v for a, v in zip(axes, attrs["starts"])]
        ends = [2**31 - 1 if int(a) % rank in (h, w) else v for a, v in zip(axes, attrs["ends"])]
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("starts", starts), helper.make_attribute("ends", ends),
                               helper.make_attribute("axes", axes)])
        return
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in node.input}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                 if n.op_type == "Constant" and n.output[0] in node.input}
    values.update(constants)
    starts = [int(v) for v in values[node.input[1]]]
    ends = [int(v) for v in values[node.input[2]]]
    axes = [int(v) for v in values[node.input[3]]] if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
    for k, axis in enumerate(axes):
        if axis % rank in (h, w):
            starts[k], ends[k] = 0, 2**63 - 1
    for index, label, numbers in ((1, "starts", starts), (2, "ends", ends)):
        name = f"{node.output[0]}__tile_{label}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(numbers, np.int64), name))
        node.input[index] = name


def _set_pad_amounts(model: onnx.ModelProto, node: onnx.NodeProto, pads: tuple[int, int, int, int], layout: str) -> None:
    """Give a Pad node the amounts `pads` (top, left, bottom, right) on H and W, as a new constant input (or its
    attribute, before opset 11)."""
    h, w = (1, 2) if layout == "NHWC" else (2, 3)
    amounts = [0] * 8
    amounts[h], amounts[w], amounts[h + 4], amounts[w + 4] = pads
    if any(a.name == "pads" for a in node.attribute):
        kept = [a for a in node.attribute if a.name != "pads"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("pads", amounts)])
        return
    name = f"{node.output[0]}__tile_pads"
    model.graph.initializer.append(numpy_helper.from_array(np.array(amounts, np.int64), name))
    node.input[1] = name

"""Write a tile plan's artifacts, verify them, and publish the folder in one rename.

OUTDIR/plan.json                  strategy "tiles": grid, per-tile geometry, MACs, memory, prediction
OUTDIR/tiles/model.onnx           the fused stack (whole input), graph only
OUTDIR/tiles/weights.bin          the stack's weights, shared by every tile graph
OUTDIR/tiles/tile_<id>.onnx       one graph per tile: the stack on its input region, pads only at true borders
OUTDIR/tiles/stack<k>/            with several stacks, stack k (from 1) after the first: its model.onnx,
                                  weights.bin and tile_<id>.onnx, cropped from the maps stitched before it
OUTDIR/tiles/stack<k>/client_step/  what the client computes before stack k's tiles (a squeeze-and-excitation
                                  vector from the stitched map; model.onnx + weights.bin)
OUTDIR/remainder/model.onnx       the rest of the model, run after stitching (absent when the stack is all)
OUTDIR/remainder/weights.bin
  or, when a layer is too big for a node and split by output neurons:
OUTDIR/remainder/segment<k>/      the client's segments between split layers (model.onnx + weights.bin)
OUTDIR/neurons/step<k>/slice<i>/  one slice of a split layer with only its weights (model.onnx + weights.bin)

Verification: every tile is run on its crops of a random input, the outputs
are stitched into a pool of maps (each later stack's tiles cropped from the
maps of the pool it reads), the remainder runs on the maps it reads, and the
result is compared with the original model's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.chain import PartStep, SlicedStep, SliceRef, Step, cached_sessions, run_steps
from splitnn.onnxsplit.artifacts.folder import publish, staging_folder
from splitnn.onnxsplit.artifacts.layout import CLIENT_STEP_DIR, MODEL_FILE, REMAINDER_DIR, WEIGHTS_FILE, tile_stack_dir
from splitnn.onnxsplit.artifacts.part_files import save_part
from splitnn.onnxsplit.artifacts.parts import Part, build_part, part_boundary
from splitnn.onnxsplit.artifacts.plan_file import TilePlanFile, header_fields, save_verification_data, write_plan
from splitnn.onnxsplit.artifacts.verification import compare_outputs, reference_outputs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.records import to_dict
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import WeightSource
from splitnn.onnxsplit.tiles.geometry import Layer, Tile, TileGrid, crop, in_memory, stack_inputs
from splitnn.onnxsplit.tiles.neuron_split import Segment, remainder_steps, slice_model
from splitnn.onnxsplit.tiles.planning import TilePlan
from splitnn.onnxsplit.tiles.reuse import (
    first_layer_input,
    first_phase,
    reuse_macs,
    reuse_units,
    run_second_phase,
    second_phase_data,
    second_phase_layers,
)
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
            _set_hw(value, computed[value.name], layouts[value.name])
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
            if layer.op_type == "Pad":
                _set_pad_amounts(model, node, part.pads, layer.in_layout)
            elif layer.op_type == "Slice" and layer.window is not None:
                _slice_from_crop(model, node, layer)
            elif layer.op_type in WINDOW_OPS:
                _set_pads(node, part.pads)
            if layer.scale != (1, 1):
                nodes.extend(_resize_in_tile(model, node, layer, part))
                continue
            if layer.op_type == "ConvTranspose":
                nodes.extend(_deconvolution_in_tile(model, node, layer, part))
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
        _set_hw(value, cell, layouts[name])
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _set_hw(value: onnx.ValueInfoProto, region: Any, layout: str) -> None:
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


def _resize_in_tile(model: onnx.ModelProto, node: onnx.NodeProto, layer: Layer, part: Any) -> list[onnx.NodeProto]:
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


def every_layer_outputs(model: onnx.ModelProto, stack: list[Layer], tile: Tile) -> onnx.ModelProto:
    """`model` (a tile graph) also returning every layer's output over the tile's region, in stack order."""
    graph = model.graph
    elem = graph.input[0].type.tensor_type.elem_type
    del graph.output[:]
    for layer, part in zip(stack, tile.layers):
        y0, y1, x0, x1 = part.output_region
        dims = in_memory((1, layer.out_shape[1], y1 - y0, x1 - x0), layer.out_layout)
        graph.output.append(helper.make_tensor_value_info(layer.output, elem, list(dims)))
    return model


def _static_behind(model: onnx.ModelProto, reads: set[str], skip: set[str]) -> list[onnx.NodeProto]:
    """The nodes of `model` that compute tensors in `reads` from constants alone (Constant nodes, a weight's
    DequantizeLinear), and those behind them, in the model's order; tensors in `skip` are not followed."""
    producer = {out: node for node in model.graph.node for out in node.output}
    wanted: set[int] = set()
    todo = [name for name in reads if name not in skip]
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in wanted or any(out in skip for out in node.output):
            continue
        wanted.add(id(node))
        todo.extend(name for name in node.input if name and name not in skip)
    return [node for node in model.graph.node if id(node) in wanted]


def layer_model(stack_model: onnx.ModelProto, members: tuple[Layer, ...], unit: Layer, input_region: Any,
                output_region: Any, pads: tuple[int, int, int, int]) -> onnx.ModelProto:
    """One unit of the stack alone (reuse.reuse_units: a layer and the pointwise ones that follow it), on
    `input_region`, computing `output_region` with `pads` on its first layer (reuse's second phase)."""
    nodes = []
    for member in members:
        node = onnx.NodeProto()
        node.CopyFrom(next(n for n in stack_model.graph.node if n.output[0] == member.output))
        nodes.append(node)
    reads = {name for node in nodes for name in node.input}
    constants = _static_behind(stack_model, reads, {member.output for member in members} | {unit.input})
    reads |= {name for node in constants for name in node.input}
    initializers = [t for t in stack_model.graph.initializer if t.name in reads]
    elem = stack_model.graph.input[0].type.tensor_type.elem_type
    (iy0, iy1, ix0, ix1), (oy0, oy1, ox0, ox1) = input_region, output_region
    layer, first = unit, members[0]
    graph = helper.make_graph(
        [*constants, *nodes], f"unit_{first.name}",
        [helper.make_tensor_value_info(layer.input, elem, list(in_memory((1, layer.in_shape[1], iy1 - iy0, ix1 - ix0),
                                                                            layer.in_layout)))],
        [helper.make_tensor_value_info(layer.output, elem, list(in_memory((1, layer.out_shape[1], oy1 - oy0, ox1 - ox0),
                                                                             layer.out_layout)))],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=list(stack_model.opset_import), ir_version=stack_model.ir_version)
    window_node = model.graph.node[len(constants)]
    if first.op_type == "Pad":
        _set_pad_amounts(model, window_node, pads, first.in_layout)
    elif first.op_type == "Slice" and first.window is not None:
        _slice_from_crop(model, window_node, first)
    elif first.op_type in WINDOW_OPS:
        _set_pads(window_node, pads)
    return model


def write_tiles(analysis: Analysis, plan: TilePlan, outdir: str | Path, *, reuse: bool = False, atol: float = 1e-4,
                rtol: float = 1e-3) -> TilePlanFile:
    """Write, verify and publish the artifacts of tile `plan`; return the plan file written."""
    outdir = Path(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
    if reuse:
        _check_reuse(plan)
    stack_parts, client_steps, remainder = _parts(analysis, plan)
    with staging_folder(outdir) as staging:
        steps: list[Step] = []
        with WeightSource.of(graph) as weights:
            for number, part in enumerate(stack_parts):
                save_part(part, staging / tile_stack_dir(number), weights)
            for number, step in client_steps.items():
                save_part(step, staging / tile_stack_dir(number) / CLIENT_STEP_DIR, weights)
            if plan.neuron_splits:
                steps = _write_steps(analysis, plan, staging, weights)
            elif remainder.model is not None:
                save_part(remainder, staging / REMAINDER_DIR, weights)
        artifacts, reuse_docs = _write_tile_graphs(plan, staging, reuse)
        for number, step in client_steps.items():
            assert number > 0  # a client step runs between two stacks (stack_region.stack_ends)
            artifacts["later_stacks"][number - 1]["client_step"] = PartStep(
                f"{tile_stack_dir(number)}/{CLIENT_STEP_DIR}/{MODEL_FILE}", step.inputs, step.outputs).to_dict()
        if steps:
            artifacts["remainder_steps"] = [step.to_dict() for step in steps]
        elif remainder.model is not None:
            artifacts["remainder_model"] = f"{REMAINDER_DIR}/{MODEL_FILE}"
            artifacts["remainder_weights"] = f"{REMAINDER_DIR}/{WEIGHTS_FILE}"
            steps = [PartStep(artifacts["remainder_model"], remainder.inputs, remainder.outputs)]
        feeds = random_inputs(graph)
        expected = reference_outputs(graph, feeds)
        max_err, passed = compare_outputs(run_locally(staging, artifacts, plan, feeds, steps), expected, atol, rtol)
        if not passed:
            raise SplitnnError(f"verification failed: the stitched tiles differ from the model by up to {max_err:.3g} "
                               f"(atol {atol}, rtol {rtol}); nothing was written")
        save_verification_data(staging, feeds, expected)
        # The plan's own to_dict gives the planning figures; reading the whole back through TilePlanFile checks it.
        plan_fields = plan.to_dict()
        for later, doc in zip(plan_fields["later_stacks"], reuse_docs[1:]):
            later["reuse"] = doc
        document = TilePlanFile.from_dict({
            **to_dict(header_fields(graph, outdir)),
            "image_input": plan.stack[0].input,
            **plan_fields,
            "remainder": {"inputs": list(remainder.inputs), "outputs": list(remainder.outputs),
                          "empty": remainder.model is None},
            "reuse": reuse_docs[0],
            "verification": {"max_abs_err": max_err, "atol": atol, "rtol": rtol, "passed": passed},
            "artifacts": artifacts,
        })
        document = write_plan(staging, document)
        publish(staging, outdir)
        return document


def _check_reuse(plan: TilePlan) -> None:
    """Refuse --reuse on a plan whose stacks it cannot run unit by unit, saying why."""
    if any(layer.scale != (1, 1) or layer.op_type == "ConvTranspose" for phase in plan.stacks
           for layer in phase.stack):
        raise SplitnnError("--reuse takes each layer's overlap from the neighbouring tiles, and a Resize's or a "
                           "ConvTranspose's is not worked out yet: drop --reuse")
    if any(layer.op_type in ("Cast", "QuantizeLinear", "DequantizeLinear")
           for phase in plan.stacks for layer in phase.stack):
        raise SplitnnError("--reuse runs the stack unit by unit in one element type, and this stack changes it (a Cast "
                           "or int8 quantization): drop --reuse")
    if any(layer.broadcast for phase in plan.stacks for layer in phase.stack):
        raise SplitnnError("--reuse runs the stack unit by unit on one map, and a stack here also reads a whole-map "
                           "vector (a squeeze-and-excitation block's): drop --reuse")
    if any(reuse_units(phase.grid) is None for phase in plan.stacks):
        raise SplitnnError("--reuse runs the stack unit by unit (a layer and the pointwise ones after it), and this "
                           "stack's branches span units (a residual block, a split, several maps handed on): drop --reuse")


def _parts(analysis: Analysis, plan: TilePlan) -> tuple[list[Part], dict[int, Part], Part]:
    """Each fused stack (on its whole inputs), the client step before each stack that has one (by stack number),
    and the remainder that runs on the stitched maps and vectors it reads."""
    graph = analysis.graph
    stack_parts = []
    client_steps = {}
    stitched: list[str] = []
    for number, phase in enumerate(plan.stacks):
        if phase.before is not None:
            indices = list(phase.before.indices)
            inputs = part_boundary(graph, indices, ())[0]
            client_steps[number] = Part(build_part(graph, graph.model, indices, inputs, phase.before.outputs,
                                                   f"client_step{number}"), inputs, phase.before.outputs)
            stitched += phase.before.outputs
        inputs, outputs = phase.grid.inputs, phase.grid.output_names
        model = build_part(graph, graph.model, [layer.index for layer in phase.stack], inputs, outputs,
                           "stack" if number == 0 else f"stack{number}")
        stack_parts.append(Part(model, inputs, outputs))
        stitched += outputs
    remainder_outputs = tuple(o for o in graph.outputs if o not in stitched)
    remainder_reads, _ = part_boundary(graph, plan.remainder_indices, ())
    last = plan.stacks[-1].grid.output_names
    remainder_inputs = tuple(dict.fromkeys([*(n for n in last if n in remainder_reads or not plan.remainder_indices),
                                            *(n for n in stitched if n in remainder_reads),
                                            *(n for n in graph.inputs if n in remainder_reads)]))
    remainder = Part(build_part(graph, graph.model, list(plan.remainder_indices), remainder_inputs, remainder_outputs,
                                "remainder"), remainder_inputs, remainder_outputs)
    return stack_parts, client_steps, remainder


def _write_tile_graphs(plan: TilePlan, staging: Path, reuse: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One graph per tile of every stack (and, with reuse, the phase graphs), each reading its stack's one weight
    blob; returns the artifacts and each stack's reuse record."""
    stacks, docs = [], []
    for number, phase in enumerate(plan.stacks):
        folder = tile_stack_dir(number)
        stack_model = onnx.load(str(staging / folder / MODEL_FILE), load_external_data=False)
        files: dict[str, Any] = {"stack_model": f"{folder}/{MODEL_FILE}", "stack_weights": f"{folder}/{WEIGHTS_FILE}",
                                 "tiles": []}
        for tile in phase.grid.tiles:
            name = f"{folder}/tile_{tile.id}.onnx"
            onnx.save_model(tile_model(stack_model, phase.stack, tile, phase.grid.outputs), str(staging / name))
            files["tiles"].append(name)
        docs.append(_write_reuse(phase.grid, stack_model, staging, folder, files) if reuse else {"enabled": False})
        stacks.append(files)
    return {**stacks[0], "later_stacks": stacks[1:]}, docs


def _write_steps(analysis: Analysis, plan: TilePlan, staging: Path, weights: WeightSource) -> list[Step]:
    """The remainder as client segments and neuron-split layers, each slice with only its weights."""
    graph = analysis.graph
    steps: list[Step] = []
    for number, step in enumerate(remainder_steps(graph, plan.remainder_indices, list(plan.neuron_splits))):
        if isinstance(step, Segment):
            folder = f"{REMAINDER_DIR}/segment{number}"
            model = build_part(graph, graph.model, list(step.indices), step.inputs, step.outputs, f"segment{number}")
            save_part(Part(model, step.inputs, step.outputs), staging / folder, weights)
            steps.append(PartStep(f"{folder}/{MODEL_FILE}", step.inputs, step.outputs))
            continue
        slices = []
        for i, neurons in enumerate(step.ranges):
            folder = staging / "neurons" / f"step{number}" / f"slice{i}"
            folder.mkdir(parents=True)
            model = slice_model(graph, weights, step, neurons, list(graph.model.opset_import))
            # onnx's own external-data writer: the slice's weights in its own blob.
            onnx.save_model(model, str(folder / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=WEIGHTS_FILE, size_threshold=0)
            slices.append(SliceRef(f"neurons/step{number}/slice{i}/{MODEL_FILE}", neurons,
                                   (folder / WEIGHTS_FILE).stat().st_size))
        steps.append(SlicedStep(step.name, step.input, step.output, tuple(slices)))
    return steps


def _write_reuse(grid: TileGrid, stack_model: onnx.ModelProto, staging: Path, folder: str,
                 artifacts: dict[str, Any]) -> dict[str, Any]:
    """One stack's reuse graphs in its `folder`: first-phase tiles returning every layer, second-phase tiles one graph
    per computed layer; their names go into the stack's `artifacts`, and its reuse record is returned."""
    units = reuse_units(grid)
    assert units is not None  # write_tiles refused the stacks without
    first: dict[str, str] = {}
    layers: dict[str, dict[str, str]] = {}
    for tile, unit_tile in zip(grid.tiles, units.grid.tiles):
        if first_phase(tile):
            name = f"{folder}/tile_{tile.id}_every_layer.onnx"
            model = every_layer_outputs(tile_model(stack_model, grid.stack, tile), units.grid.stack, unit_tile)
            onnx.save_model(model, str(staging / name))
            first[str(tile.id)] = name
            continue
        layers[str(tile.id)] = {}
        for index, part in enumerate(second_phase_layers(units.grid, unit_tile)):
            if part.compute is None:
                continue
            name = f"{folder}/tile_{tile.id}_layer{index}.onnx"
            onnx.save_model(layer_model(stack_model, units.members[index], units.grid.stack[index], part.input_region,
                                        part.compute, part.pads), str(staging / name))
            layers[str(tile.id)][str(index)] = name
    artifacts["reuse"] = {"first_phase": first, "second_phase_layers": layers}
    grid = units.grid
    macs = reuse_macs(grid)
    return {"enabled": True, "macs": macs, "saved_macs": grid.tiled_macs - macs,
            "saved_fraction_of_redundant": (grid.tiled_macs - macs) / max(grid.tiled_macs - grid.stack_macs, 1),
            "second_phase": {str(t.id): second_phase_data(grid, t) for t in grid.tiles if not first_phase(t)}}


def run_reuse_locally(folder: Path, reuse: dict[str, Any], grid: TileGrid, image: np.ndarray) -> dict[int, np.ndarray]:
    """Every tile's output of one stack with reuse (`reuse`: its artifacts' reuse graphs; `image`: the stack's
    input): first phase in full, second phase unit by unit (in this process)."""
    units = reuse_units(grid)
    assert units is not None
    grid = units.grid
    per_layer: dict[int, list[np.ndarray]] = {}
    finals: dict[int, np.ndarray] = {}
    for tile_id, name in reuse["first_phase"].items():
        tile = grid.tiles[int(tile_id)]
        first_crop = crop(image, tile.input_region, grid.stack[0].in_layout)
        per_layer[tile.id] = create_session(folder / name, prepack=False).run(None, {grid.stack[0].input: first_crop})
        finals[tile.id] = per_layer[tile.id][-1]
    for tile_id, names in reuse["second_phase_layers"].items():
        tile = grid.tiles[int(tile_id)]
        sessions = {int(index): create_session(folder / name, prepack=False) for index, name in names.items()}
        data = second_phase_data(grid, tile)

        def run_layer(index: int, x: np.ndarray, sessions: dict[int, Any] = sessions) -> np.ndarray:
            return sessions[index].run(None, {sessions[index].get_inputs()[0].name: x})[0]  # type: ignore[no-any-return]

        finals[tile.id] = run_second_phase(data, first_layer_input(data, image), run_layer, per_layer)
    return finals


def run_locally(folder: Path, artifacts: dict[str, Any], plan: TilePlan, feeds: dict[str, np.ndarray],
                remainder: list[Step]) -> dict[str, np.ndarray]:
    """Run every tile of every stack in this process, stitching after each (the stitched maps join a pool that
    later stacks and the remainder read from), and run the remainder's steps: the plan's outputs on `feeds`."""
    pool = dict(feeds)
    session_of = cached_sessions(lambda model: create_session(folder / model, prepack=False, threads=1))
    for number, phase in enumerate(plan.stacks):
        files = artifacts if number == 0 else artifacts["later_stacks"][number - 1]
        if files.get("client_step"):
            run_steps([PartStep.from_dict(files["client_step"])], pool, session_of)
        outputs: dict[int, list[np.ndarray]] = {}
        if "reuse" in files:
            reused = run_reuse_locally(folder, files["reuse"], phase.grid, pool[phase.stack[0].input])
            outputs = {tile_id: [value] for tile_id, value in reused.items()}
        for tile, name in zip(phase.grid.tiles, files["tiles"]):
            if tile.id not in outputs:
                session = create_session(folder / name, prepack=False)
                outputs[tile.id] = session.run(None, phase.grid.tile_feeds(tile, pool))
        pool.update(phase.grid.stitch_all(outputs))
    return run_steps(remainder, pool, session_of)

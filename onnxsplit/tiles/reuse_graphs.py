"""The graphs of a stack with reuse (tiles/reuse.py), written beside its tile graphs, and their run in one process.

OUTDIR/tiles[/stack<k>]/tile_<id>_every_layer.onnx   a first-phase tile: its tile graph also returning every
                                                     unit's output over the tile's region
OUTDIR/tiles[/stack<k>]/tile_<id>_layer<u>.onnx      unit u of a second-phase tile, on the region it reads,
                                                     computing its rectangle
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from splitnn.onnxsplit.artifacts.reuse_records import ReuseTile, UnitWork
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.tiles.geometry import Layer, Region, TileGrid, TileLayer, tile_crops
from splitnn.onnxsplit.tiles.reuse import (
    first_phase_outputs,
    reuse_macs,
    reuse_tiles,
    reuse_units,
    run_second_phase,
    second_phase_crops,
)
from splitnn.onnxsplit.tiles.tile_graphs import set_hw, fit_to_region, tile_model


def tensor_types(stack_model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor of the stack's graph with its element type and whole-map shape (onnx's shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(stack_model)
    graph = inferred.graph
    return {value.name: value for value in [*graph.input, *graph.value_info, *graph.output]}


def _typed(types: dict[str, onnx.ValueInfoProto], name: str, region: Region | None, layout: str
           ) -> onnx.ValueInfoProto:
    """`name`'s value info, its height and width those of `region` (None: whole, a whole-map vector)."""
    value = onnx.ValueInfoProto()
    value.CopyFrom(types[name])
    if region is not None:
        set_hw(value, region, layout)
    return value


def every_unit_output(model: onnx.ModelProto, record: ReuseTile, types: dict[str, onnx.ValueInfoProto]
                      ) -> onnx.ModelProto:
    """`model` (a first-phase tile's graph) returning every unit's output over the tile's regions, in
    `record.tensors`' order."""
    del model.graph.output[:]
    model.graph.output.extend(_typed(types, name, region, record.layouts[name])
                              for name, region in zip(record.tensors, record.regions))
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


def unit_model(stack_model: onnx.ModelProto, members: list[Layer], work: UnitWork, layouts: dict[str, str],
               types: dict[str, onnx.ValueInfoProto]) -> onnx.ModelProto:
    """One unit of the stack alone (its layers `members`), reading its maps over `work.reads` and its vectors whole,
    computing `work.compute` (a second-phase tile's graph for that unit)."""
    by_output = {node.output[0]: node for node in stack_model.graph.node if node.output}
    nodes = []
    for member in members:
        node = onnx.NodeProto()
        node.CopyFrom(by_output[member.output])
        nodes.append(node)
    reads = {name for node in nodes for name in node.input if name}
    made = {name for node in nodes for name in node.output}
    constants = _static_behind(stack_model, reads - made, {*work.maps, *work.vectors} | made)
    reads |= {name for node in constants for name in node.input}
    graph = helper.make_graph(
        [*constants, *nodes], f"unit_{members[0].name}",
        [*(_typed(types, name, work.reads, layouts[name]) for name in work.maps),
         *(_typed(types, name, None, layouts[name]) for name in work.vectors)],
        [_typed(types, name, work.compute, layouts[name]) for name in work.outputs],
        initializer=[t for t in stack_model.graph.initializer if t.name in reads])
    model = helper.make_model(graph, opset_imports=list(stack_model.opset_import), ir_version=stack_model.ir_version)
    window_node = model.graph.node[len(constants)]
    assert work.reads is not None and work.compute is not None  # units that compute nothing get no graph
    part = TileLayer(work.reads, work.compute, work.pads, computed_region=work.computed)
    head = fit_to_region(model, window_node, members[0], part)
    rest = list(model.graph.node[len(constants) + 1:])
    del model.graph.node[len(constants):]
    model.graph.node.extend([*head, *rest])
    return model


def write_reuse_graphs(grid: TileGrid, stack_model: onnx.ModelProto, staging: Path, folder: str,
                       artifacts: dict[str, Any]) -> dict[str, Any]:
    """One stack's reuse graphs in its `folder`: first-phase tiles returning every unit, second-phase tiles one
    graph per unit they compute; their names go into the stack's `artifacts`, and its reuse record is returned."""
    units = reuse_units(grid.stack, grid.output_names)
    records = reuse_tiles(grid, units)
    types = tensor_types(stack_model)
    first: dict[str, str] = {}
    layers: dict[str, dict[str, str]] = {}
    for tile, record in zip(grid.tiles, records):
        if record.first_phase:
            name = f"{folder}/tile_{tile.id}_every_layer.onnx"
            model = every_unit_output(tile_model(stack_model, grid.stack, tile, grid.outputs), record, types)
            onnx.save_model(model, str(staging / name))
            first[str(tile.id)] = name
            continue
        layers[str(tile.id)] = {}
        for index, (unit, work) in enumerate(zip(units, record.units)):
            if work.compute is None:
                continue
            name = f"{folder}/tile_{tile.id}_layer{index}.onnx"
            members = [grid.stack[i] for i in unit.members]
            onnx.save_model(unit_model(stack_model, members, work, record.layouts, types), str(staging / name))
            layers[str(tile.id)][str(index)] = name
    artifacts["reuse"] = {"first_phase": first, "second_phase_layers": layers}
    macs = reuse_macs(grid, units, records)
    return {"enabled": True, "macs": macs, "saved_macs": grid.tiled_macs - macs,
            "saved_fraction_of_redundant": (grid.tiled_macs - macs) / max(grid.tiled_macs - grid.stack_macs, 1),
            "tiles": {str(record.id): record.to_dict() for record in records}}


def run_reuse_locally(folder: Path, reuse: dict[str, Any], grid: TileGrid, pool: dict[str, np.ndarray]
                      ) -> dict[int, list[np.ndarray]]:
    """Every tile's outputs of one stack with reuse (`reuse`: its artifacts' reuse graphs; `pool`: the maps it
    reads), first phase then second, in this process."""
    records = reuse_tiles(grid, reuse_units(grid.stack, grid.output_names))
    layouts = tuple(grid.input_layout(name) for name in grid.inputs)
    every_unit: dict[int, list[np.ndarray]] = {}
    finals: dict[int, list[np.ndarray]] = {}
    for tile, record in zip(grid.tiles, records):
        if record.first_phase:
            session = create_session(folder / reuse["first_phase"][str(tile.id)], prepack=False)
            every_unit[tile.id] = session.run(None, dict(zip(grid.inputs, tile_crops(tile, pool, grid.inputs, layouts))))
            finals[tile.id] = first_phase_outputs(record, every_unit[tile.id])
    for tile, record in zip(grid.tiles, records):
        if record.first_phase:
            continue
        names = reuse["second_phase_layers"][str(tile.id)]
        sessions = {int(index): create_session(folder / name, prepack=False) for index, name in names.items()}

        def run_unit(index: int, feeds: dict[str, np.ndarray], sessions: dict[int, Any] = sessions) -> list[np.ndarray]:
            return sessions[index].run(None, feeds)

        finals[tile.id] = run_second_phase(record, second_phase_crops(record, pool), run_unit, every_unit)
    return finals

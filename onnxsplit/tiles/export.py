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
from splitnn.onnxsplit.tiles.neuron_split import Segment, remainder_steps, slice_model
from splitnn.onnxsplit.tiles.planning import TilePlan
from splitnn.onnxsplit.tiles.reuse_graphs import run_reuse_locally, write_reuse_graphs
from splitnn.onnxsplit.tiles.tile_graphs import tile_model


def write_tiles(analysis: Analysis, plan: TilePlan, outdir: str | Path, *, reuse: bool = False, atol: float = 1e-4,
                rtol: float = 1e-3) -> TilePlanFile:
    """Write, verify and publish the artifacts of tile `plan`; return the plan file written."""
    outdir = Path(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
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
        docs.append(write_reuse_graphs(phase.grid, stack_model, staging, folder, files) if reuse else {"enabled": False})
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
            slice_folder = staging / "neurons" / f"step{number}" / f"slice{i}"
            slice_folder.mkdir(parents=True)
            model = slice_model(graph, weights, step, neurons, list(graph.model.opset_import))
            # onnx's own external-data writer: the slice's weights in its own blob.
            onnx.save_model(model, str(slice_folder / MODEL_FILE), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=WEIGHTS_FILE, size_threshold=0)
            slices.append(SliceRef(f"neurons/step{number}/slice{i}/{MODEL_FILE}", neurons,
                                   (slice_folder / WEIGHTS_FILE).stat().st_size))
        steps.append(SlicedStep(step.name, step.input, step.output, tuple(slices)))
    return steps


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
            outputs = run_reuse_locally(folder, files["reuse"], phase.grid, pool)
        for tile, name in zip(phase.grid.tiles, files["tiles"]):
            if tile.id not in outputs:
                session = create_session(folder / name, prepack=False)
                outputs[tile.id] = session.run(None, phase.grid.tile_feeds(tile, pool))
        pool.update(phase.grid.stitch_all(outputs))
    return run_steps(remainder, pool, session_of)

"""Write a pipeline plan's stages, verify them chained, and publish the folder in one rename (issue 33, item 4).

OUTDIR/plan.json                                   PipelinePlanFile
OUTDIR/stages/<k>-<machine>/model.onnx, weights.bin   stage k's part and its weights (each once)
OUTDIR/stages/<k>-<machine>/model.ort              the part in onnxruntime's mobile format, for a board-class machine
OUTDIR/verification/inputs.npz, reference.npz      the input the chained stages were verified on, the model's outputs

A stage receives the frame of the cut before it, runs its part on what the
part reads of it, and sends the frame of the cut after it (tensors it
received and did not use are forwarded as they are); an empty stage is a
relay and has no folder. Board-class machines (less than BOARD_CLASS_RAM of
memory) get the ORT-format part, as a vertical split's device does, and the
verification runs that file for them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from splitnn.cost_models.machines import Machines
from splitnn.onnxsplit.analysis.analyze import Analysis, analyze
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.artifacts.chain import PartStep, run_steps
from splitnn.onnxsplit.artifacts.folder import publish, staging_folder
from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, ORT_FILE, WEIGHTS_FILE, stage_dir
from splitnn.onnxsplit.artifacts.part_files import ORT_FORMAT_MAX_BYTES, convert_to_ort, save_part
from splitnn.onnxsplit.artifacts.parts import Part, build_part, part_boundary
from splitnn.onnxsplit.artifacts.pipeline_records import PlannedLink, PlannedMachine, StageFiles
from splitnn.onnxsplit.artifacts.plan_file import (
    PipelinePlanFile,
    header_fields,
    model_path,
    save_verification_data,
    write_plan,
)
from splitnn.onnxsplit.artifacts.verification import (
    Verification,
    compare_outputs,
    model_references,
    verification_session,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import WeightSource
from splitnn.onnxsplit.pipeline.planning import PipelineChoice, PipelinePlan

BOARD_CLASS_RAM = 16 * 10**9  # below this, a machine is a board or a phone: its stage also gets the .ort


def stage_parts(analysis: Analysis, plan: PipelinePlan) -> list[tuple[Part, StageFiles]]:
    """Each stage's part (a relay's has no model) and what its process receives, runs and sends."""
    graph = analysis.graph
    placed = placeable_indices(graph)
    sent = [(), *(hop.tensors for hop in plan.hops)]  # sent[s]: what stage s receives (the source: the inputs)
    found = []
    for number, stage in enumerate(plan.stages):
        receives = tuple(graph.inputs) if number == 0 else sent[number]
        sends = plan.hops[number].tensors if number < len(plan.hops) else tuple(graph.outputs)
        indices = placed[stage.start:stage.end]
        inputs, outputs = part_boundary(graph, indices, sends)
        model = build_part(graph, graph.model, indices, inputs, outputs, f"stage{number}_{stage.machine}")
        folder = stage_dir(number, stage.machine) if model is not None else None
        found.append((Part(model, inputs, outputs),
                      StageFiles(stage.machine, folder, receives, inputs, outputs, sends)))
    return found


def write_pipeline(analysis: Analysis, choice: PipelineChoice, machines: Machines, outdir: str | Path,
                   machines_file: str, atol: float = 1e-4, rtol: float = 1e-3, ort_format: bool = True
                   ) -> PipelinePlanFile:
    """Write, verify and publish the stages of `choice.best` (a board's also in ORT format unless `ort_format` is
    False); return the plan file written."""
    outdir = Path(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
    plan = choice.best
    parts = stage_parts(analysis, plan)
    with staging_folder(outdir) as staging:
        files = []
        with WeightSource.of(graph) as weights:
            for part, stage_files in parts:
                files.append(_write_stage(staging, part, stage_files, machines, weights, ort_format))
        feeds = random_inputs(graph)
        original = model_references(graph, feeds)
        results = chain_stages(files, feeds, lambda stage: staging / (stage.ort or stage.model or ""))
        max_err, passed = compare_outputs(results, original.outputs, atol, rtol)
        if not passed:
            raise SplitnnError(f"verification failed: the chained stages differ from the model by up to {max_err:.3g} "
                               f"(atol {atol}, rtol {rtol}); nothing was written; loosen --atol/--rtol if this "
                               "precision is expected")
        check = Verification(max_err, atol, rtol, passed, None)
        save_verification_data(staging, feeds, original.outputs)
        document = PipelinePlanFile(
            **header_fields(graph, outdir), objective=plan.objective, machines_file=machines_file,
            machines=tuple(PlannedMachine(m.name, m.profile, m.count, m.source) for m in machines.machines),
            links=tuple(PlannedLink(e.a, e.b, e.link) for e in machines.links),
            stages=plan.stages, hops=plan.hops, reply=plan.reply, predicted=plan.figures(),
            two_machines=choice.two_machines.figures() if choice.two_machines else None,
            source_alone=choice.source_alone.figures() if choice.source_alone else None,
            files=tuple(files), verification=check)
        document = write_plan(staging, document)
        publish(staging, outdir)
        return document


def plan_model_analysis(folder: Path, plan: PipelinePlanFile) -> Analysis:
    """The model a written plan was made from, at the plan's input shapes, analysed again (for a plan made again
    from it: a baseline, or one over the machines left after a drop); one line where the model is gone."""
    model = model_path(folder, plan)
    if not model.is_file():
        raise SplitnnError(f"the model '{model}' is gone, and the plan is made again from it")
    return analyze(load_graph(str(model), {name: tuple(spec.shape) for name, spec in plan.inputs.items()}))


def write_like(analysis: Analysis, stages: PipelinePlan, machines: Machines, plan: PipelinePlanFile,
               outdir: Path) -> PipelinePlanFile:
    """`stages` written and verified to `outdir` as `plan` was: with its machines file, tolerances and ORT choice."""
    return write_pipeline(analysis, PipelineChoice(stages, None, None), machines, outdir, plan.machines_file,
                          atol=plan.verification.atol, rtol=plan.verification.rtol,
                          ort_format=any(f.ort for f in plan.files))


def _write_stage(staging: Path, part: Part, files: StageFiles, machines: Machines, weights: WeightSource,
                 ort_format: bool) -> StageFiles:
    """A stage's part and blob (and .ort for a board-class machine) under its folder; its files as plan.json keeps
    them."""
    if part.model is None or files.folder is None:
        return files
    folder = staging / files.folder
    save_part(part, folder, weights)
    ort = None
    board = machines.machine(files.machine).profile.ram_bytes < BOARD_CLASS_RAM
    if ort_format and board and (folder / WEIGHTS_FILE).stat().st_size >= ORT_FORMAT_MAX_BYTES:
        raise SplitnnError(f"the stage on '{files.machine}' holds over 2 GiB of weights and the ORT format cannot: "
                           "add --no-ort")
    if ort_format and board:
        convert_to_ort(folder / MODEL_FILE, folder / ORT_FILE)
        ort = f"{files.folder}/{ORT_FILE}"
    return StageFiles(files.machine, files.folder, files.receives, files.inputs, files.outputs, files.sends,
                      f"{files.folder}/{MODEL_FILE}", f"{files.folder}/{WEIGHTS_FILE}", ort)


def chain_stages(files: Sequence[StageFiles], feeds: dict[str, np.ndarray],
                 path_of: Callable[[StageFiles], Path]) -> dict[str, np.ndarray]:
    """The model's outputs through every stage in turn, each stage passing on only what it sends; `path_of` gives
    the file each stage with a part runs (the .ort where a machine runs one)."""
    frame = dict(feeds)
    for stage in files:
        pool = {name: frame[name] for name in stage.receives}
        if stage.model is not None:
            path = path_of(stage)
            step = PartStep(path.name, stage.inputs, stage.outputs)
            pool = run_steps([step], pool, lambda _: verification_session(path))
        frame = {name: pool[name] for name in stage.sends}
    return frame

"""Write a split plan's artifacts, verify them, and publish the folder in one rename.

OUTDIR/plan.json
OUTDIR/device/model.onnx   graph only        OUTDIR/device/weights.bin  all its weights
OUTDIR/device/model.ort    onnxruntime's mobile (ORT) format of the device part
OUTDIR/server/model.onnx   graph only        OUTDIR/server/weights.bin  all its weights

Everything is written under a staging folder beside OUTDIR and renamed into
place only after verification passed, so a failed run leaves no half-written
plan behind.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.cost_models.latency import NodeWork, node_work
from splitnn.cost_models.prediction import Prediction
from splitnn.cost_models.wire_bytes import coded_frame_bytes
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import Cut, device_side
from splitnn.onnxsplit.artifacts.chain import PartStep, outputs_of, run_steps
from splitnn.onnxsplit.artifacts.folder import publish, staging_folder
from splitnn.onnxsplit.artifacts.layout import DEVICE_DIR, MODEL_FILE, ORT_FILE, SERVER_DIR, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.part_files import (
    ORT_FORMAT_MAX_BYTES,
    convert_to_ort,
    save_part,
)
from splitnn.onnxsplit.artifacts.parts import Part, extract_parts
from splitnn.onnxsplit.artifacts.plan_file import (
    CodecRecord,
    CodecTrialRecord,
    Parts,
    PartSpec,
    ReplyCodecRecord,
    VerticalArtifacts,
    VerticalPlanFile,
    header_fields,
    save_verification_data,
    write_plan,
)
from splitnn.onnxsplit.artifacts.verification import (
    References,
    Verification,
    compare_outputs,
    model_references,
    settle_int8,
    unfused_max_error,
    verification_session,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import WeightSource
from splitnn.onnxsplit.vertical.codec_check import (
    OutputChangeLimit,
    ServerRun,
    Tensors,
    all_codec_scales,
    choose_reply_codec,
    default_limit,
    measure_codec,
    measure_reply_codec,
    part_runner,
)
from splitnn.onnxsplit.vertical.planning import Plan, candidate_record, cut_record, with_request_bytes


def run_device_side(folder: Path, device: Part, feeds: dict[str, np.ndarray],
                    ort_format: bool) -> tuple[dict[str, np.ndarray], str | None, tuple[str, ...] | None]:
    """Convert the written device part to ORT format (when asked) and run the file a device would run.

    The ORT-format file was converted from the .onnx part, so running it checks
    both. Returns the device part's outputs, the file run (relative to `folder`) and the part's weights the .ort
    does not hold as they were (VerticalPlanFile.device_ort_folded; None: no .ort).
    """
    if device.model is None:
        return {}, None, None
    device_file = folder / DEVICE_DIR / MODEL_FILE
    folded = None
    if ort_format:
        folded = convert_to_ort(device_file, folder / DEVICE_DIR / ORT_FILE)
        device_file = folder / DEVICE_DIR / ORT_FILE
    values = verification_session(device_file).run(list(device.outputs), {n: feeds[n] for n in device.inputs})
    return dict(zip(device.outputs, values)), device_file.relative_to(folder).as_posix(), folded


def verify(
    folder: Path,
    parts: tuple[Part, Part],
    feeds: dict[str, np.ndarray],
    device_results: dict[str, np.ndarray],
    device_artifact: str | None,
    references: References,
    atol: float,
    rtol: float,
) -> tuple[Verification, dict[str, np.ndarray]]:
    """Run the written server part on the device part's outputs and compare with the original's outputs (an int8
    model's like with like too: verification.py); also returns the chained parts' outputs."""
    server = parts[1]
    results = dict(device_results)
    if server.model is not None:
        step = PartStep(f"{SERVER_DIR}/{MODEL_FILE}", server.inputs, server.outputs)
        pool = run_steps([step], {**feeds, **results}, lambda model: verification_session(folder / model))
        results.update(outputs_of(pool, server.outputs))
    max_err, passed = compare_outputs(results, references.outputs, atol, rtol)
    check = Verification(max_err, atol, rtol, passed, device_artifact)
    if references.unfused is not None:
        device_run = (device_results, device_artifact)
        unfused = _unfused_check(folder, parts, feeds, device_run, references.unfused, atol, rtol)
        check = settle_int8(check, unfused, references.step, "the chained parts")
    return check, results


def _unfused_check(folder: Path, parts: tuple[Part, Part], feeds: dict[str, np.ndarray],
                   device_run: tuple[dict[str, np.ndarray], str | None], reference: dict[str, np.ndarray], atol: float,
                   rtol: float) -> tuple[float, bool]:
    """An int8 model's like-with-like check (verification.unfused_max_error) of the written parts against the model
    run unfused (`reference`). A device .ort was converted at UNFUSED_LEVEL (DEVICE_PART_LEVEL) and onnxruntime
    transforms an ORT-format file no further when it loads it, so the outputs it gave stand; a device .onnx runs
    again."""
    device, server = parts
    device_results, device_artifact = device_run
    steps, computed = [], dict(feeds)
    if device_artifact is not None and device_artifact.endswith(ORT_FILE):
        computed.update(device_results)
    elif device.model is not None:
        steps.append(PartStep(f"{DEVICE_DIR}/{MODEL_FILE}", device.inputs, device.outputs))
    if server.model is not None:
        steps.append(PartStep(f"{SERVER_DIR}/{MODEL_FILE}", server.inputs, server.outputs))
    return unfused_max_error(folder, [steps], computed, reference, atol, rtol)


def write_split(
    analysis: Analysis,
    plan: Plan,
    outdir: str | Path,
    *,
    ort_format: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    codec: str = "none",
    calibration: CalibrationInputs | None = None,
    max_output_change: OutputChangeLimit | None = None,
    codec_trials: tuple[CodecTrialRecord, ...] | None = None,
    reply_codec: str = "none",
) -> VerticalPlanFile:
    """Write, verify and publish the artifacts of `plan`; return the plan file written. With a `codec` other
    than "none" the device sends the cut's tensors in it, and what it does is measured (vertical/codec_check) on
    the `calibration` inputs (else the verification input); a codec that moves the outputs past
    `max_output_change` is refused. `codec_trials`: the pairs --codec auto priced, kept in plan.json. The server
    answers in `reply_codec`, measured the same way (_with_codecs)."""
    outdir = Path(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
    if ort_format and plan.chosen.cut.device_param_bytes >= ORT_FORMAT_MAX_BYTES:
        raise SplitnnError(
            f"the device part holds {plan.chosen.cut.device_param_bytes / 1e9:.2f} GB of weights and the ORT format "
            "(a flatbuffer) cannot exceed 2 GiB: add --no-ort, or choose an earlier cut"
        )
    # Parts are cut from the weightless skeleton; their weights are streamed from the source file.
    device, server = extract_parts(graph, graph.model, plan.chosen.cut)
    with staging_folder(outdir) as staging, ThreadPoolExecutor(max_workers=2) as background:
        # While the main thread writes the parts, the original model runs on one
        # thread and the device part is converted and run on another as soon as
        # it is written: onnxruntime and file writes release the GIL.
        # A user's own input, where they gave some, is the one verified and kept for run-bench: its bytes through the
        # codec are what the prediction counts, where a random input's are not.
        coded = codec != "none" or reply_codec != "none"
        feeds = dict(calibration.feeds[0]) if calibration is not None and coded else random_inputs(graph)
        original_run = background.submit(model_references, graph, feeds)  # an int8 model's unfused too
        artifacts, device_run = _write_parts(graph, staging, device, server, feeds, ort_format, background)
        device_results, device_artifact, ort_folded = device_run.result() if device_run else ({}, None, None)
        original = original_run.result()
        check, chained = verify(staging, (device, server), feeds, device_results, device_artifact, original, atol, rtol)
        if not check.passed:
            raise SplitnnError(
                f"verification failed: the chained parts differ from the model by up to {check.max_abs_err:.3g} "
                f"(atol {atol}, rtol {rtol}); nothing was written; loosen --atol/--rtol if this precision is expected"
            )
        save_verification_data(staging, feeds, original.outputs)
        document = dataclasses.replace(_plan_file(analysis, plan, outdir, (device, server), check, artifacts),
                                       codec_trials=codec_trials, device_ort_folded=ort_folded)
        if coded and server.model is not None:
            computed = {**feeds, **device_results}
            verified = ({name: computed[name] for name in server.inputs}, outputs_of(chained, server.outputs))
            run_server, sent, plain = _server_runs(staging, (device, server), device_artifact, verified, calibration)
            document = _with_codecs(analysis, plan, document, (run_server, sent, plain), verified, (codec, reply_codec),
                                    calibration, max_output_change)
        document = write_plan(staging, document)
        publish(staging, outdir)
        return document


def _with_codecs(analysis: Analysis, plan: Plan, document: VerticalPlanFile,
                 runs: tuple[ServerRun, list[Tensors], list[Tensors]],
                 verified: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], specs: tuple[str, str],
                 calibration: CalibrationInputs | None, limit: OutputChangeLimit | None) -> VerticalPlanFile:
    """The plan file with the cut's codec and the reply codec (`specs`; "none": plain; the reply's may be "auto":
    the one predicted back soonest within the bound, default_limit without one) measured on the inputs of
    _server_runs (`runs`), and its prediction at their bytes and times."""
    run_server, sent, plain = runs
    codec, reply_codec = specs
    returned: list[Tensors] = []  # what the server part returns through the cut's codec
    measured = (_measured_codec(run_server, sent, plain, verified, codec, calibration, limit, returned)
                if codec != "none" else None)
    scales = all_codec_scales(plan.device, plan.server)  # one read of this machine's profile for both codecs
    reply = None
    if reply_codec != "none":  # on what the server returns through the cut's codec: the change is both codecs'
        returned = returned if measured is not None else plain
        if reply_codec != "auto":
            reply = measure_reply_codec(returned, plain, reply_codec, scales.array, limit)  # an array codec
        elif limit is not None:  # the user's bound holds both codecs together
            reply = choose_reply_codec(returned, plain, scales.array, limit, plan.link.down_bps)
        else:  # the default bound holds the reply codec's own change
            reply = choose_reply_codec(returned, plain, scales.array, default_limit(analysis.graph), plan.link.down_bps,
                                       own_change=True)
    measured, predicted = _priced(analysis, plan, verified, measured, reply, scales.of(codec))
    return dataclasses.replace(document, codec=measured, reply_codec=reply, predicted=predicted)


def _priced(analysis: Analysis, plan: Plan, verified: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
            measured: CodecRecord | None, reply: ReplyCodecRecord | None,
            scales: tuple[float, float]) -> tuple[CodecRecord | None, Prediction]:
    """The codecs with their times as the board and the server take them (their times here, scaled), and the
    plan's prediction at their bytes and those times (`verified`: what the server part read and returned)."""
    up = encode_s = decode_s = None
    if measured is not None:
        measured = dataclasses.replace(measured, device_scale=scales[0], server_scale=scales[1])
        up = coded_frame_bytes(verified[0], measured.name, measured.coded_bytes)
        encode_s, decode_s = measured.device_encode_s, measured.server_decode_s
    down = coded_frame_bytes(verified[1], reply.name, reply.coded_bytes) if reply is not None else None
    reply_s = (reply.server_encode_s, reply.device_decode_s) if reply is not None else (0.0, 0.0)
    return measured, with_request_bytes(analysis, plan, up, encode_s or 0.0, decode_s or 0.0, down_bytes=down,
                                        reply_s=reply_s)


@dataclass(frozen=True)
class CalibrationInputs:
    """The user's inputs a codec is measured on (partition --calibration), and where they came from."""

    feeds: tuple[dict[str, np.ndarray], ...]
    source: str


def _server_runs(staging: Path, parts: tuple[Part, Part], device_artifact: str | None,
                 verified: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
                 calibration: CalibrationInputs | None) -> tuple[ServerRun, list[Tensors], list[Tensors]]:
    """The written server part, and per input what it reads and returns: on the calibration inputs (the parts run
    on each) or on the verification input (`verified`)."""
    device, server = parts
    run_server = part_runner(staging, server)
    if calibration is None:
        return run_server, [verified[0]], [verified[1]]
    device_session = verification_session(staging / device_artifact) if device_artifact else None
    sent, plain = [], []
    for feeds in calibration.feeds:
        computed = dict(feeds)
        if device_session is not None:
            computed.update(zip(device.outputs, device_session.run(list(device.outputs), {n: feeds[n] for n in device.inputs})))
        sent.append({name: computed[name] for name in server.inputs})
        plain.append(run_server(sent[-1]))
    return run_server, sent, plain


def _measured_codec(run_server: ServerRun, sent: list[Tensors], plain: list[Tensors],
                    verified: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], codec: str,
                    calibration: CalibrationInputs | None, limit: OutputChangeLimit | None,
                    returned: list[Tensors] | None = None) -> CodecRecord:
    """What `codec` does at the cut, on the inputs of _server_runs (`returned` receives the server part's outputs
    through it); refused past `limit`."""
    measured = measure_codec(run_server, sent, plain, codec, calibration.source if calibration else None,
                             returned=returned)
    if calibration is not None:  # what run-bench will see on the verification input, with the calibrated ranges
        on_verification = measure_codec(run_server, [verified[0]], [verified[1]], codec, ranges=measured.ranges)
        measured = dataclasses.replace(measured, verification_abs_err=on_verification.max_abs_err)
    if limit is not None and not limit.allows(measured):
        raise SplitnnError(f"--max-output-change {limit}: {measured.name} reached {limit.reached(measured)} on "
                           f"{measured.inputs} input(s); nothing was written: allow more change or choose another codec")
    return measured


def _write_parts(graph: Graph, staging: Path, device: Part, server: Part, feeds: dict[str, np.ndarray],
                 ort_format: bool, background: ThreadPoolExecutor) -> tuple[VerticalArtifacts, Future[Any] | None]:
    """Write both parts; the device part is converted and run on `background` as soon as it is written."""
    artifacts: dict[str, str] = {}
    device_run = None
    with WeightSource.of(graph) as weights:
        for side, part in ((DEVICE_DIR, device), (SERVER_DIR, server)):
            if part.model is None:
                continue
            save_part(part, staging / side, weights)
            artifacts[f"{side}_model"] = f"{side}/{MODEL_FILE}"
            artifacts[f"{side}_weights"] = f"{side}/{WEIGHTS_FILE}"
            if side == DEVICE_DIR:
                device_run = background.submit(run_device_side, staging, device, feeds, ort_format)
    if ort_format and device.model is not None:
        artifacts["device_ort"] = f"{DEVICE_DIR}/{ORT_FILE}"
    return VerticalArtifacts(**artifacts), device_run


def _plan_file(analysis: Analysis, plan: Plan, outdir: Path, parts: tuple[Part, Part], check: Verification,
               artifacts: VerticalArtifacts) -> VerticalPlanFile:
    device, server = parts
    return VerticalPlanFile(
        **header_fields(analysis.graph, outdir),
        objective=plan.objective,
        forced_cut=plan.forced,
        cut=cut_record(plan.chosen),
        predicted=plan.chosen.predicted,
        device_profile=plan.device,
        server_profile=plan.server,
        link=plan.link,
        constraints=plan.constraints,
        candidates=tuple(candidate_record(c) for c in plan.candidates),
        parts=Parts(device=PartSpec(device.inputs, device.outputs, device.model is None),
                    server=PartSpec(server.inputs, server.outputs, server.model is None)),
        verification=check,
        artifacts=artifacts,
        device_work=device_work(analysis, plan.chosen.cut),
        over_trace=plan.over_trace,
        over_range=plan.over_range,
    )


def device_work(analysis: Analysis, cut: Cut) -> tuple[NodeWork, ...]:
    """The roofline work of every node of the device part, as plan.json keeps it."""
    graph = analysis.graph
    return tuple(node_work(graph.nodes[i], analysis.nodes[i], graph) for i in device_side(graph, cut))

"""An adaptive plan: every cut that is best somewhere in a range of uplink rates, written once (issue 13, item 1).

OUTDIR/plan.json                 the kept cuts, each with its interval of rates and its latency line
OUTDIR/device/model.onnx         the model up to the deepest kept cut (the whole model when the device may
                                 answer alone), returning every kept cut's tensors; weights.bin beside it
OUTDIR/device/model.ort          its ORT-format copy
OUTDIR/server/cut<ID>.onnx       per kept cut that sends something, the rest of the model from there;
OUTDIR/server/weights.bin        one blob that all of them read (each weight stored once)

The kept cuts are prefixes of the graph's order, so each one's device side
contains the shallower ones': one device graph serves them all (onnxruntime
runs only the nodes the requested outputs need). The all-on-device cut is kept
where the device's memory allows it, best somewhere or not, so the device can
always answer alone. Every kept cut is verified before the folder is published:
the device graph's outputs for that cut, through its server graph, against the
original model.

With a codec (`partition --adaptive --codec int8+lossless`), every cut is priced at its tensors' measured bytes
in that codec before the kept cuts are drawn (vertical/codec_planning.priced_with), each kept cut that sends is
checked against the output-change bound, and what the codec did there is kept with the cut (its CodecRecord):
the device sends that cut's tensors in it, and the server decodes by the name each tensor carries. A calibrated
codec (int8:calibrated, +lossless) keeps each tensor's range in its cut's record, which both sides read from
plan.json (a tensor's range is the same whichever cut sends it: it comes from the same inputs). An image codec
(jpeg:Q, webp:Q, png) prices and sends only the cut that sends the model's input, the other cuts travel as
float32: the plain "send a JPEG" baseline, taken when the link is fast enough, beside the cuts for slower links.
With a reply codec (`--reply-codec`), every cut that sends is priced with its answer in it, measured on the
model's outputs (its own change held to the bound), and the server answers every cut in it.

run-bench runs it (measure/adaptive.py: the estimate, the choice per request,
local answers on a deadline); serve, device and update-weights refuse this
kind of plan with one line until they handle it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.artifacts.chain import PartStep, outputs_of, run_steps
from splitnn.onnxsplit.artifacts.folder import publish, staging_folder
from splitnn.onnxsplit.artifacts.layout import DEVICE_DIR, MODEL_FILE, ORT_FILE, SERVER_DIR, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.part_files import convert_to_ort, save_part, save_parts
from splitnn.onnxsplit.artifacts.parts import Part, build_part, extract_parts, part_boundary
from splitnn.onnxsplit.artifacts.plan_file import (
    AdaptiveArtifacts,
    AdaptiveCutRecord,
    AdaptivePlanFile,
    CodecRecord,
    PartSpec,
    ReplyCodecRecord,
    header_fields,
    save_verification_data,
    write_plan,
)
from splitnn.onnxsplit.artifacts.verification import (
    UNFUSED_LEVEL,
    Verification,
    compare_outputs,
    is_int8_model,
    output_quantization_step,
    reference_outputs,
    settle_int8,
    unfused_max_error,
    verification_session,
)
from splitnn.onnxsplit.codecs.specs import image_spec, require_one_codec
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import WeightSource
from splitnn.onnxsplit.vertical.codec_check import OutputChangeLimit, Tensors, measure_codec, part_runner
from splitnn.onnxsplit.vertical.codec_planning import checked_at, image_input_cut, priced_with
from splitnn.onnxsplit.vertical.link_range import KeptCut, best_over_range, latency_lines
from splitnn.onnxsplit.vertical.planning import Plan, cut_record


@dataclass(frozen=True)
class AdaptivePlan:
    plan: Plan  # at the typical link, latency objective
    kept: list[KeptCut]  # fastest rates first
    answers_alone: bool  # the all-on-device cut is among them (kept for a device that must answer alone)
    low_bps: float
    high_bps: float
    codecs: dict[int, CodecRecord] = field(default_factory=dict)  # per kept cut that sends, with a codec
    reply: ReplyCodecRecord | None = None  # the codec the server answers in (None: plain .npy)


def plan_adaptive_coded(analysis: Analysis, plan: Plan, low_bps: float, high_bps: float, spec: str,
                        inputs: Sequence[Tensors], limit: OutputChangeLimit, reply_spec: str = "none") -> AdaptivePlan:
    """plan_adaptive with every cut's tensors sent in codec `spec` ("none": plain) and the answers in
    `reply_spec`, priced and checked on `inputs` (module doc)."""
    require_one_codec(spec, "--adaptive")
    only = None
    if image_spec(spec) is not None:  # only the input can go as an image
        tensors = set(image_input_cut(analysis, spec, None))
        only = {c.cut.id for c in plan.candidates if c.cut.tensors and set(c.cut.tensors) == tensors}
    priced, at_cuts, reply = priced_with(analysis, plan, spec, inputs, only, reply_spec, limit)
    adaptive = plan_adaptive(priced, low_bps, high_bps)
    codecs = {k.candidate.cut.id: checked_at(analysis.graph, k.candidate, spec, at_cuts, limit)
              for k in adaptive.kept if spec != "none" and k.candidate.cut.tensors
              and (only is None or k.candidate.cut.id in only)}
    return dataclasses.replace(adaptive, codecs=codecs, reply=reply)


def plan_adaptive(plan: Plan, low_bps: float, high_bps: float) -> AdaptivePlan:
    """The prefix cuts best somewhere in [low_bps, high_bps], plus all on the device where its memory allows."""
    lines = [line for line in latency_lines(plan) if line.candidate.cut.device_indices is None]
    kept = best_over_range(lines, low_bps, high_bps)
    alone = next((line for line in lines if not line.candidate.cut.tensors), None)  # None: it does not fit
    if alone is not None and all(k.candidate.cut.tensors for k in kept):
        kept.append(KeptCut(alone, low_bps, low_bps))  # best nowhere in the range, kept to answer alone
    return AdaptivePlan(plan, kept, alone is not None, low_bps, high_bps)


def write_adaptive(analysis: Analysis, adaptive: AdaptivePlan, outdir: str | Path, *, ort_format: bool = True,
                   atol: float = 1e-4, rtol: float = 1e-3, feeds: Tensors | None = None) -> AdaptivePlanFile:
    """Write, verify (every kept cut) and publish the adaptive plan; return the plan file written. `feeds`: the
    verification input, which run-bench sends (default: a random one; with a codec, give one of the user's
    inputs: an image codec's bytes depend on what the image shows)."""
    outdir = Path(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
    cuts = [k.candidate.cut for k in adaptive.kept]
    deepest = max(cut.device_nodes for cut in cuts)
    if deepest == 0:
        raise SplitnnError("every kept cut sends the model's input and the device cannot hold the whole model: "
                           "there is nothing to adapt; partition without --adaptive")
    indices = placeable_indices(graph)[:deepest]
    wanted = {name for cut in cuts for name in cut.tensors}
    inputs, outputs = part_boundary(graph, indices, wanted)
    device = Part(build_part(graph, graph.model, indices, inputs, outputs, "device"), inputs, outputs)
    servers = {cut.id: extract_parts(graph, graph.model, cut)[1] for cut in cuts if cut.tensors}
    with staging_folder(outdir) as staging:
        with WeightSource.of(graph) as weights:
            save_part(device, staging / DEVICE_DIR, weights)
            if servers:
                save_parts({_server_file(i): part for i, part in servers.items()}, staging / SERVER_DIR, weights)
        device_file = staging / DEVICE_DIR / MODEL_FILE
        if ort_format:
            convert_to_ort(device_file, staging / DEVICE_DIR / ORT_FILE)
            device_file = staging / DEVICE_DIR / ORT_FILE
        feeds = dict(feeds) if feeds is not None else random_inputs(graph)
        reference = reference_outputs(graph, feeds)
        device_results = dict(zip(device.outputs, verification_session(device_file).run(
            list(device.outputs), {n: feeds[n] for n in device.inputs})))
        check = _verify_every_cut(staging, servers, feeds, device_results, reference, atol, rtol,
                                  device_file.relative_to(staging).as_posix())
        if is_int8_model(graph):  # like with like decides (verification.py's docstring)
            unfused = _unfused_every_cut(staging, device, servers, {**feeds, **device_results} if ort_format else feeds,
                                         reference_outputs(graph, feeds, UNFUSED_LEVEL), atol, rtol)
            check = settle_int8(check, unfused, output_quantization_step(graph), "a kept cut's chained parts")
        if not check.passed:
            raise SplitnnError(f"verification failed: a kept cut's chained parts differ from the model by up to "
                               f"{check.max_abs_err:.3g} (atol {atol}, rtol {rtol}); nothing was written; loosen "
                               "--atol/--rtol if this is expected")
        save_verification_data(staging, feeds, reference)
        adaptive = dataclasses.replace(adaptive, codecs=_on_verification(staging, servers, adaptive.codecs,
                                                                          {**feeds, **device_results}))
        document = _plan_file(analysis, adaptive, outdir, device, servers, check, ort_format)
        document = write_plan(staging, document)
        publish(staging, outdir)
        return document


def _on_verification(folder: Path, servers: dict[int, Part], codecs: dict[int, CodecRecord],
                     computed: Tensors) -> dict[int, CodecRecord]:
    """Each kept cut's codec record with what it does on the verification input, which run-bench sends: the
    server graph on its tensors through the codec (with the calibrated ranges) against it on them as they are."""
    measured = {}
    for cut_id, record in codecs.items():
        server = servers[cut_id]
        run = part_runner(folder, server, f"{SERVER_DIR}/{_server_file(cut_id)}")
        sent = {n: computed[n] for n in server.inputs}
        on_verification = measure_codec(run, [sent], [run(sent)], record.name, ranges=record.ranges)
        measured[cut_id] = dataclasses.replace(record, verification_abs_err=on_verification.max_abs_err)
    return measured


def _server_file(cut_id: int) -> str:
    return f"cut{cut_id}.onnx"


def _verify_every_cut(folder: Path, servers: dict[int, Part], feeds: dict, device_results: dict, reference: dict,
                      atol: float, rtol: float, device_artifact: str) -> Verification:
    """Each kept cut chained (the device graph's outputs through its server graph) against the model; the worst."""
    worst, passed = compare_outputs(device_results, {k: v for k, v in reference.items() if k in device_results},
                                    atol, rtol) if any(k in device_results for k in reference) else (0.0, True)
    for cut_id, server in servers.items():
        step = PartStep(f"{SERVER_DIR}/{_server_file(cut_id)}", server.inputs, server.outputs)
        pool = run_steps([step], {**feeds, **device_results}, lambda model: verification_session(folder / model))
        results = {**{k: v for k, v in device_results.items() if k in reference}, **outputs_of(pool, server.outputs)}
        error, ok = compare_outputs(results, reference, atol, rtol)
        worst, passed = max(worst, error), passed and ok
    return Verification(worst, atol, rtol, passed, device_artifact)


def _unfused_every_cut(folder: Path, device: Part, servers: dict[int, Part], computed: dict, reference: dict,
                       atol: float, rtol: float) -> tuple[float, bool]:
    """An int8 model's like-with-like check (verification.unfused_max_error): each kept cut chained against the model
    run unfused (`reference`). `computed` holds the device .ort's outputs where there is one (converted at
    UNFUSED_LEVEL, transformed no further when loaded); else the device .onnx runs again."""
    first = [] if any(name in computed for name in device.outputs) else [
        PartStep(f"{DEVICE_DIR}/{MODEL_FILE}", device.inputs, device.outputs)]
    chains = [[*first, PartStep(f"{SERVER_DIR}/{_server_file(cut_id)}", server.inputs, server.outputs)]
              for cut_id, server in servers.items()]
    if all(name in device.outputs for name in reference):  # the device graph answers alone
        chains.append(first)
    return unfused_max_error(folder, chains, computed, reference, atol, rtol)


def _plan_file(analysis: Analysis, adaptive: AdaptivePlan, outdir: Path, device: Part, servers: dict[int, Part],
               check: Verification, ort_format: bool) -> AdaptivePlanFile:
    kept = []
    for k in adaptive.kept:
        cut, line = k.candidate.cut, k.line
        server = servers.get(cut.id)
        spec = PartSpec(server.inputs, server.outputs, False) if server else PartSpec((), (), True)
        kept.append(AdaptiveCutRecord(cut_record(k.candidate), k.candidate.predicted, k.low_bps, k.high_bps,
                                      line.fixed_s, line.wire_bits, spec,
                                      f"{SERVER_DIR}/{_server_file(cut.id)}" if server else None,
                                      adaptive.codecs.get(cut.id)))
    plan = adaptive.plan
    return AdaptivePlanFile(
        **header_fields(analysis.graph, outdir),
        device_profile=plan.device, server_profile=plan.server, link=plan.link, constraints=plan.constraints,
        low_bps=adaptive.low_bps, high_bps=adaptive.high_bps, kept=tuple(kept),
        device=PartSpec(device.inputs, device.outputs, False), answers_alone=adaptive.answers_alone,
        verification=check, reply_codec=adaptive.reply,
        artifacts=AdaptiveArtifacts(f"{DEVICE_DIR}/{MODEL_FILE}", f"{DEVICE_DIR}/{WEIGHTS_FILE}",
                                    f"{SERVER_DIR}/{WEIGHTS_FILE}" if servers else None,
                                    f"{DEVICE_DIR}/{ORT_FILE}" if ort_format else None),
    )

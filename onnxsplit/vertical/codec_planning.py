"""partition --codec auto: the cut and the codec chosen together, on measured bytes and measured output change
(issue 14).

1. The original model runs once per input with every candidate cut's tensors as extra outputs (a cut that
   could not beat the best plain cut even if it sent nothing is left out: its device and server time alone are
   too long).
2. Every (cut, codec) pair that could win is priced at its real encoded bytes (the median over BYTES_INPUTS of
   the inputs, evenly spaced: a folder of photographs and their mirror images is not priced on its first four)
   and its encode and decode times measured here (planning.with_request_bytes).
3. The pairs are tried in order of that prediction; a lossless pair passes as it is, a lossy one passes when the
   cut's server part, run on the decoded tensors of every input, keeps the outputs within the limit. The first
   that passes is chosen; the ones before it are reported with what ruled them out. Steps 2 and 3 go together,
   best first (_best_first): a pair is priced only when its floor, its cut's compute and the round trip, could
   still beat every pair priced, so the cuts that cannot win are never encoded.
4. When the chosen pair sends the input as an image at a quality, the qualities between it and the next lower
   rung of the ladder (IMAGE_LADDER) are priced and checked the same way: auto's image is the fastest quality
   within the limit to the unit, not to the ladder's rung (VGG-16's photographs at relerr<=0.05: webp:86:0, 14.8
   kB, where the ladder stopped at webp:90:0, 15.9 kB). Its output change is not monotonic in the quality, so
   each is checked, none inferred from its neighbours.

The cut that sends the model's input (everything on the server) is also priced with the input as an image file
(IMAGE_LADDER, codecs/image.py), when the input is one image, even where it cannot win: the plain baseline of
sending a JPEG, which a split must beat to be worth it, is always in the report.
"""
from __future__ import annotations

import dataclasses
import heapq
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx

from splitnn.cost_models.prediction import Prediction
from splitnn.cost_models.wire_bytes import coded_frame_bytes
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.parts import extract_parts, value_info
from splitnn.onnxsplit.artifacts.plan_file import CodecRecord, CodecTrialRecord, ReplyCodecRecord
from splitnn.onnxsplit.artifacts.verification import VERIFY_CONFIG
from splitnn.onnxsplit.codecs.image import image_axis, image_codec_name
from splitnn.onnxsplit.codecs.specs import image_spec, is_calibrated, tensor_codecs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.weight_source import open_in_place
from splitnn.onnxsplit.vertical.codec_check import (
    CodecScales,
    OutputChangeLimit,
    Tensors,
    all_codec_scales,
    calibrated_ranges,
    choose_reply_codec,
    default_limit,
    measure_codec,
    measure_reply_codec,
    round_trip,
)
from splitnn.onnxsplit.vertical.planning import (
    Candidate,
    Plan,
    objective_score,
    plain_reply_bytes,
    plain_request_bytes,
    with_request_bytes,
)

AUTO_CODECS = ("none", "lossless", "fp16", "fp16+lossless", "int8:calibrated", "int8:calibrated+lossless")
# Priced at the cut that sends the model's input, when that input is one image. PNG is lossless on the 8-bit
# codes, not on a float input: it is checked like the others. WebP at effort 0 too: on a board its encode is
# tens of ms shorter for a few % more bytes, which wins on the faster links.
IMAGE_LADDER = ("jpeg:95", "jpeg:90", "jpeg:80", "jpeg:70", "jpeg:50", "jpeg:30", "webp:90", "webp:90:0", "webp:80",
                "webp:80:0", "webp:60", "webp:60:0", "png")
LOSSLESS = ("none", "lossless")
BYTES_INPUTS = 8  # inputs each pair's bytes and times are measured on (the median), spread over all of them
# The chosen image codec's quality is then refined to the unit, down to the next lower rung of its format and
# effort that was ruled out, or QUALITY_STEP below it where none was (the lowest rung, or one not checked).
QUALITY_STEP = 10


@dataclass(frozen=True)
class Pair:
    """A cut and a codec, priced at the request's bytes in that codec (the median over the inputs priced)."""

    prediction: Prediction
    candidate: Candidate
    codec: str
    request_bytes: int


@dataclass(frozen=True)
class CodecPlan:
    plan: Plan  # its chosen candidate is the chosen cut (priced plain; write_split prices it coded)
    codec: str
    trials: tuple[CodecTrialRecord, ...]  # every pair priced, fastest first, with its verdict


def plan_cut_and_codec(analysis: Analysis, plan: Plan, inputs: Sequence[Tensors], limit: OutputChangeLimit,
                       calibrated: bool, reply_spec: str = "none",
                       progress: Callable[[str, int, int], None] | None = None) -> CodecPlan:
    """The best (cut, codec) pair by the plan's objective whose output change stays within `limit` (see the module
    doc). `calibrated`: the inputs are the user's, so int8:calibrated may take its ranges from them. `reply_spec`:
    the codec the answers travel in (--reply-codec; "auto" as codec_check.choose_reply_codec picks it on the
    model's outputs), which every pair that sends is priced with. `progress(stage, done, total)`: called as pairs
    are priced and checked (checking stops at the first pair within the limit, before its total)."""
    codecs = [c for c in AUTO_CODECS if calibrated or not is_calibrated(c)]
    images = [c for c in IMAGE_LADDER if calibrated] if image_tensors(analysis.graph, analysis.cuts[0].tensors) else []
    pool = [plan.chosen] if plan.forced else [c for c in plan.candidates if c.feasible]  # --cut: its codec only
    best_plain = min(objective_score(c.predicted, plan.objective) for c in pool)
    sending = [c for c in pool if c.cut.tensors and (plan.forced or _may_win(c, plan, best_plain))]
    # The input as an image is priced even where it cannot win: it is the baseline the report shows.
    baseline = [c for c in pool if c.cut.id == analysis.cuts[0].id] if images else []
    at_cuts = _tensors_at(analysis.graph, {t for c in [*sending, *baseline] for t in c.cut.tensors}, inputs)
    scales = all_codec_scales(plan.device, plan.server)
    # The answer's codecs are array codecs; a named one is held to the bound by write_split, on both codecs' change
    # together.
    reply = reply_on_outputs(analysis.graph, at_cuts, reply_spec, scales.array,
                             limit if reply_spec == "auto" else None, plan.link.down_bps)

    def price(candidate: Candidate, spec: str) -> Pair:
        return _pair(analysis, plan, candidate, spec, at_cuts, scales, reply)

    ready = [price(c, spec) for c in baseline for spec in images]
    ready += [Pair(c.predicted, c, "none", 0) for c in pool if not c.cut.tensors]
    ready += [price(c, "none") for c in sending]  # no encoding: cheap
    pairs = [(c, spec) for c in sending for spec in codecs if spec != "none"]
    trials, chosen = _best_first(analysis.graph, plan, pairs, ready, at_cuts, limit, progress, price)
    if chosen is None:
        raise SplitnnError(f"--codec auto: no cut and codec keeps the outputs within {limit}")
    finer = [price(chosen.candidate, spec) for spec in finer_qualities(chosen.codec, trials)]
    if finer:  # the image codec's qualities between the ladder's rungs, each to the unit
        trials, chosen = _refined(analysis.graph, plan, trials, chosen, finer, at_cuts, limit, progress)
    return CodecPlan(dataclasses.replace(plan, chosen=chosen.candidate), chosen.codec, tuple(trials))


def _refined(graph: Graph, plan: Plan, trials: list[CodecTrialRecord], chosen: Pair, finer: list[Pair],
             at_cuts: Sequence[Tensors], limit: OutputChangeLimit,
             progress: Callable[[str, int, int], None] | None) -> tuple[list[CodecTrialRecord], Pair]:
    """The trials and the chosen pair once the pairs `finer` (the chosen cut at finer qualities) faster than the
    chosen one were checked in order: the first within `limit` is chosen instead."""
    bar = objective_score(chosen.prediction, plan.objective)
    faster = [f for f in finer if objective_score(f.prediction, plan.objective) < bar]
    more, better = _best_first(graph, plan, (), faster, at_cuts, limit, progress, stage="finer qualities")
    more += [_trial(f, "not checked: slower than the chosen pair") for f in finer if f not in faster]
    if better is not None:
        trials = [dataclasses.replace(t, verdict="within the limit; a finer quality is faster")
                  if t.verdict == "chosen" else t for t in trials]
        chosen = better
    return sorted([*trials, *more], key=lambda t: (t.total_s, t.cut_id)), chosen


def finer_qualities(spec: str, trials: Sequence[CodecTrialRecord]) -> list[str]:
    """When `spec` is an image codec at a quality: the same format and effort at every quality between it and the
    highest lower quality of theirs that was ruled out (QUALITY_STEP below it where none was tried); else none."""
    parsed = image_spec(spec)
    if parsed is None:
        return []
    fmt, quality, method = parsed
    if quality is None:
        return []
    ruled_out = [image_spec(t.codec) for t in trials if t.verdict.startswith("ruled out")]
    lower = [rung[1] for rung in ruled_out if rung is not None and rung[0] == fmt and rung[2] == method
             and rung[1] is not None and rung[1] < quality]
    floor = max(lower, default=max(quality - QUALITY_STEP, 0))
    return [image_codec_name(fmt, q, method) for q in range(floor + 1, quality)]


def _best_first(graph: Graph, plan: Plan, pairs: Sequence[tuple[Candidate, str]], ready: Sequence[Pair],
                at_cuts: Sequence[Tensors], limit: OutputChangeLimit, progress: Callable[[str, int, int], None] | None,
                price: Callable[[Candidate, str], Pair] | None = None, stage: str = "checking pairs",
                ) -> tuple[list[CodecTrialRecord], Pair | None]:
    """The pairs `ready` (priced) and `pairs` (priced by `price` when their turn comes) checked fastest first until
    one keeps the outputs within `limit`: every pair's record, and the chosen pair (None when none passed).

    For the latency objective a pair takes at least its cut's compute and the round trip, whatever its codec
    (`_floor`), so a pair is priced only when nothing priced is faster than that floor, and a cut whose floor is
    past the chosen pair is never encoded: the choice is the one pricing every pair would make (the PP-OCR layout
    detector on a slow board: 169 of 615 cuts priced, the rest skipped; pricing them all took 6 min). For the
    other objectives every pair is priced first."""
    heap = [(_floor(c, plan), c.cut.id, 0, i) for i, (c, _) in enumerate(pairs)]  # 0: still to price
    priced = list(ready)
    heap += [(objective_score(p.prediction, plan.objective), p.candidate.cut.id, 1, i) for i, p in enumerate(priced)]
    heapq.heapify(heap)
    trials: list[CodecTrialRecord] = []
    chosen, done, checked = None, 0, 0
    while heap and chosen is None:
        _, cut_id, kind, index = heapq.heappop(heap)
        if kind == 0:  # its turn: priced, and back in the order at its prediction
            assert price is not None, "pairs to price need a price"
            priced.append(price(*pairs[index]))
            heapq.heappush(heap, (objective_score(priced[-1].prediction, plan.objective), cut_id, 1, len(priced) - 1))
            done += 1
            if progress:
                progress("pricing pairs", done, len(pairs))
            continue
        pair, checked = priced[index], checked + 1
        if progress:
            progress(stage, checked, len(pairs) + len(ready))
        exact = pair.codec in LOSSLESS or not pair.candidate.cut.tensors
        verdict = "chosen (exact)" if exact else _check(graph, pair.candidate, pair.codec, at_cuts, limit)
        chosen = pair if verdict.startswith("chosen") else None
        trials.append(_trial(pair, verdict))
    for key, _, kind, index in sorted(heap):
        if kind == 1:
            trials.append(_trial(priced[index], "not checked: slower than the chosen pair"))
        else:
            candidate, spec = pairs[index]
            trials.append(CodecTrialRecord(candidate.cut.id, tuple(candidate.cut.tensors), spec, key, None,
                                           "not priced: its compute and the round trip are slower than the chosen "
                                           "pair", None))
    return trials, chosen


def _floor(candidate: Candidate, plan: Plan) -> float:
    """The least a pair at `candidate`'s cut can score, whatever its codec: for latency its cut's compute and the
    round trip (no bytes, no encoding); for the other objectives no floor."""
    if plan.objective != "latency":
        return float("-inf")
    p = candidate.predicted
    return p.device_s + p.server_s + plan.link.rtt_s


def _trial(pair: Pair, verdict: str) -> CodecTrialRecord:
    cut, prediction = pair.candidate.cut, pair.prediction
    return CodecTrialRecord(cut.id, tuple(cut.tensors), pair.codec, prediction.total_s, prediction.throughput_fps,
                            verdict, pair.request_bytes)


def priced_with(analysis: Analysis, plan: Plan, spec: str, inputs: Sequence[Tensors], only: set[int] | None = None,
                reply_spec: str = "none", limit: OutputChangeLimit | None = None,
                ) -> tuple[Plan, list[Tensors], ReplyCodecRecord | None]:
    """`plan` with every feasible cut that sends (of cut ids `only`, when given) priced in `spec` at its measured
    bytes and codec times (an adaptive plan draws its latency lines from these), its answer in `reply_spec`
    (reply_on_outputs, within `limit`); per input the model's outputs and every such cut's tensors; and the reply
    codec's record."""
    sending = [c for c in plan.candidates if c.feasible and c.cut.tensors and (only is None or c.cut.id in only)]
    at_cuts = _tensors_at(analysis.graph, {t for c in sending for t in c.cut.tensors}, inputs)
    scales = all_codec_scales(plan.device, plan.server)
    reply = reply_on_outputs(analysis.graph, at_cuts, reply_spec, scales.array, limit or default_limit(analysis.graph),
                             plan.link.down_bps)
    priced = {c.cut.id: _pair(analysis, plan, c, spec, at_cuts, scales, reply).prediction for c in sending}
    candidates = [dataclasses.replace(c, predicted=priced[c.cut.id]) if c.cut.id in priced else c for c in plan.candidates]
    return dataclasses.replace(plan, candidates=candidates), at_cuts, reply


def checked_at(graph: Graph, candidate: Candidate, spec: str, at_cuts: Sequence[Tensors],
               limit: OutputChangeLimit) -> CodecRecord:
    """What `spec` does at `candidate`'s cut on every input (the cut's server part run on the decoded tensors);
    refused when it moves the outputs past `limit`."""
    record = _measure_at(graph, candidate, spec, at_cuts)
    if spec not in LOSSLESS and not limit.allows(record):
        raise SplitnnError(f"--codec {spec} moves cut {candidate.cut.id}'s outputs past {limit}: it reached "
                           f"{limit.reached(record)}; nothing was written: allow more change or choose another codec")
    return record


def image_tensors(graph: Graph, names: Sequence[str]) -> list[str]:
    """Of tensors `names`, the ones an image codec can send: one image each, float or uint8 (codecs/image)."""
    return [n for n in names if image_axis(tuple(graph.shape(n))) is not None
            and (graph.info(n).dtype == "uint8" or graph.info(n).dtype.startswith("float"))]


def image_input_cut(analysis: Analysis, spec: str, forced: Sequence[str] | None) -> tuple[str, ...]:
    """The cut an image codec sends: the model's input, all else on the server. Refused when the input is no image
    or the user named another cut."""
    tensors = tuple(analysis.cuts[0].tensors)
    if not image_tensors(analysis.graph, tensors):
        shapes = ", ".join(f"{n} {list(analysis.graph.shape(n))}" for n in tensors)
        raise SplitnnError(f"--codec {spec} sends the model's input as an image, and no input is one image "
                           f"(1x3xHxW, 1xHxWx3 or one channel; this model takes {shapes}): choose another codec")
    if forced is not None and set(forced) != set(tensors):
        raise SplitnnError(f"--codec {spec} sends the model's input ({', '.join(tensors)}), all else on the server: "
                           "drop --cut")
    return tensors


def _may_win(candidate: Candidate, plan: Plan, best_plain: float) -> bool:
    """Whether the cut could beat the best plain cut if its tensors took no time on the wire."""
    if plan.objective != "latency":
        return True
    p = candidate.predicted
    return p.device_s + p.server_s + plan.link.rtt_s < best_plain


def _tensors_at(graph: Graph, names: set[str], inputs: Sequence[Tensors]) -> list[Tensors]:
    """Per input: the model's outputs, and the tensors `names` (one run of the model with them as extra outputs)."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    extra = sorted(n for n in names if n not in graph.outputs and n not in graph.inputs)
    model.graph.output.extend(value_info(graph, name) for name in extra)
    session = open_in_place(model, graph.initializers, graph.model_file, prepack=False, config=VERIFY_CONFIG)
    wanted = [*graph.outputs, *extra]
    return [{**feeds, **dict(zip(wanted, session.run(wanted, feeds)))} for feeds in inputs]


def reply_on_outputs(graph: Graph, at_cuts: Sequence[Tensors], spec: str, scales: tuple[float, float],
                     limit: OutputChangeLimit | None, downlink_bps: float) -> ReplyCodecRecord | None:
    """The reply codec `spec` on the model's outputs (None: plain; "auto": the one back soonest within `limit` on
    its own change; a named one is refused past `limit`, when given). write_split measures it again on what the
    chosen cut's server part returns."""
    if spec == "none":
        return None
    outputs = [{o: values[o] for o in graph.outputs} for values in at_cuts]
    if spec == "auto":
        return choose_reply_codec(outputs, outputs, scales, limit or default_limit(graph), downlink_bps,
                                  own_change=True)
    return measure_reply_codec(outputs, outputs, spec, scales, limit)


def _pair(analysis: Analysis, plan: Plan, candidate: Candidate, spec: str, at_cuts: Sequence[Tensors],
          scales: CodecScales, reply: ReplyCodecRecord | None = None) -> Pair:
    """The candidate with its tensors in `spec`, priced at the encoded bytes of BYTES_INPUTS inputs and the codec's
    times here, scaled to the device and the server by `scales`; its answer in `reply` (the plain answer's bytes
    times the codec's ratio on the model's outputs)."""
    encode_s = decode_s = 0.0
    if spec == "none":
        up = plain_request_bytes(analysis, candidate)  # as the plan prices it
    else:
        sent = [{t: values[t] for t in candidate.cut.tensors} for values in at_cuts]
        codecs = tensor_codecs(spec, calibrated_ranges(spec, sent))  # the ranges over every input, as write_split
        trips = [round_trip(codecs, tensors) for tensors in sent[::max(1, len(sent) // BYTES_INPUTS)][:BYTES_INPUTS]]
        up = coded_frame_bytes(candidate.cut.tensors, spec, int(statistics.median(t.coded_bytes for t in trips)))
        device_scale, server_scale = scales.of(spec)
        encode_s = statistics.median(t.encode_s for t in trips) * device_scale
        decode_s = statistics.median(t.decode_s for t in trips) * server_scale
    down, reply_s = None, (0.0, 0.0)
    if reply is not None:
        down = int(plain_reply_bytes(analysis, candidate) / reply.ratio)
        reply_s = (reply.server_encode_s, reply.device_decode_s)
    return Pair(with_request_bytes(analysis, plan, up, encode_s, decode_s, candidate, down, reply_s), candidate, spec,
                up)


def _check(graph: Graph, candidate: Candidate, spec: str, at_cuts: Sequence[Tensors], limit: OutputChangeLimit) -> str:
    """Run the cut's server part on every input's tensors through `spec`: "chosen" or why it is ruled out."""
    record = _measure_at(graph, candidate, spec, at_cuts)
    return "chosen" if limit.allows(record) else f"ruled out: {limit.reached(record)} (limit {limit})"


def _measure_at(graph: Graph, candidate: Candidate, spec: str, at_cuts: Sequence[Tensors]) -> CodecRecord:
    """measure_codec at `candidate`'s cut, its server part run in memory on every input's tensors."""
    _, server = extract_parts(graph, graph.model, candidate.cut)
    if server.model is None:
        raise SplitnnError(f"cut {candidate.cut.id} leaves nothing to run on the server: no codec to measure there")
    session = open_in_place(server.model, graph.initializers, graph.model_file, prepack=False, config=VERIFY_CONFIG)
    outputs = list(server.outputs)

    def run(tensors: Tensors) -> Tensors:
        return dict(zip(outputs, session.run(outputs, {n: tensors[n] for n in server.inputs})))

    sent = [{t: a[t] for t in server.inputs} for a in at_cuts]
    plain = [{o: a[o] for o in outputs} for a in at_cuts]
    return measure_codec(run, sent, plain, spec)

"""Measure candidate cuts of one model under one link, as in Neurosurgeon's per-layer experiment.

Each candidate (every feasible cut, or the `top` best by prediction) is
written and verified like `splitnn partition --cut`, then run end to end by
`run_bench` under the same emulated link, with the device emulated from the
profiles (K per cut). The candidates are measured in `rounds`, each round
visiting every cut with its share of the requests, so that a slow stretch of
a shared machine falls on all cuts alike rather than on whichever was being
measured. What is measured follows the objective:
  latency    - end-to-end p50 of one request at a time, over all rounds;
  throughput - seconds per frame of a pipelined stream (1 / frames per second),
               the median over rounds.
The regret of the planner is the measured time of the cut it chose over the
measured time of the best cut measured: 1.0 when the prediction picked the
best one.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
from splitnn.onnxsplit.artifacts.verification import reference_outputs
from splitnn.onnxsplit.measure.split_report import SplitBenchReport
from splitnn.onnxsplit.measure.vertical import BenchOptions, run_bench
from splitnn.onnxsplit.codecs.specs import require_self_describing
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.runtime.link_emulator import LinkSettings
from splitnn.onnxsplit.vertical.codec_planning import priced_with
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import Candidate, Plan, best_candidate

MEASURABLE = ("latency", "throughput")


@dataclass(frozen=True)
class StageSeconds(Record):
    device_s: float  # compute + encode
    transfer_s: float
    server_s: float
    e2e_s: float | None = None


@dataclass(frozen=True)
class SweepPoint(Record):
    """One measured cut: its prediction and what its rounds measured (None when every request failed)."""

    cut_id: int
    tensors: tuple[str, ...]
    after_node: str | None
    bytes: int
    predicted_s: float
    measured_s: float | None
    predicted: StageSeconds
    measured: StageSeconds
    ok: int
    errors: int
    slowdown: float
    outputs_match: bool | None


@dataclass(frozen=True)
class PointBrief(Record):
    cut_id: int
    tensors: tuple[str, ...]
    after_node: str | None
    predicted_s: float
    measured_s: float | None


@dataclass(frozen=True)
class SweepReport(Record):
    model: str
    objective: str
    measure: str
    device: str
    server: str
    link: str
    requests: int
    rounds: int
    feasible_cuts: int
    sweep: tuple[SweepPoint, ...]
    chosen: PointBrief
    best: PointBrief | None
    regret: float | None  # chosen / best, both measured
    codec: str = "none"  # every cut's tensors sent in it (run-bench --sweep --codec), and predicted at its bytes
    reply_codec: str = "none"  # every cut's answers sent in it (run-bench --sweep --reply-codec)


def predicted_seconds(candidate: Candidate, objective: str) -> float:
    p = candidate.predicted
    return p.total_s if objective == "latency" else 1.0 / p.throughput_fps


def sweep_cuts(
    analysis: Analysis,
    plan: Plan,
    link: LinkSettings,
    *,
    top: int | None = None,
    requests: int = 10,
    rounds: int = 2,
    slowdown: float | None = None,
    timeout_s: float = 30.0,
    workdir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    codec: str = "none",
    reply_codec: str = "none",
) -> SweepReport:
    """Measure the plan's feasible candidates (the `top` best by prediction, or all) and report the regret.

    `plan` is what `plan_split` chose; `slowdown` None calibrates each cut's
    device part to its prediction (as `run-bench --device-slowdown auto` does). With a `codec`, every cut is
    predicted and sends in it (see _priced_in).
    """
    if plan.objective not in MEASURABLE:
        raise SplitnnError(f"a sweep measures latency or throughput, not {plan.objective} (that needs a power meter): "
                           "use --objective latency or throughput")
    if codec != "none" or reply_codec != "none":
        plan = _priced_in(analysis, plan, codec, reply_codec)
    ranked = sorted((c for c in plan.candidates if c.feasible),
                    key=lambda c: (predicted_seconds(c, plan.objective), c.cut.id))
    measured = _to_measure(ranked, plan.chosen, top)
    rounds = max(1, min(rounds, requests))
    with tempfile.TemporaryDirectory(prefix="splitnn-sweep-", dir=workdir) as folder:
        reference = _write_cuts(analysis, plan, measured, Path(folder), progress, (codec, reply_codec))
        reports = _measure_rounds(Path(folder), measured, link, slowdown, reference, requests, rounds, timeout_s=timeout_s,
                                  stream=plan.objective == "throughput", progress=progress)
    points = [_point(candidate, plan.objective, reports[candidate.cut.id]) for candidate in measured]

    timed = [(p.measured_s, p) for p in points if p.measured_s is not None]  # the cuts some request got through
    chosen = next(p for p in points if p.cut_id == plan.chosen.cut.id)
    best_s, best = min(timed, key=lambda pair: pair[0]) if timed else (None, None)
    regret = chosen.measured_s / best_s if best_s is not None and chosen.measured_s is not None else None
    return SweepReport(
        model=str(analysis.graph.path),
        objective=plan.objective,
        measure="e2e p50 per request" if plan.objective == "latency" else "seconds per frame, pipelined",
        device=plan.device.name,
        server=plan.server.name,
        link=link.describe(),
        requests=requests,
        rounds=rounds,
        feasible_cuts=len(ranked),
        sweep=tuple(points),
        chosen=_brief(chosen),
        best=_brief(best) if best else None,
        regret=regret,
        codec=codec,
        reply_codec=reply_codec,
    )


def _to_measure(ranked: list[Candidate], chosen: Candidate, top: int | None) -> list[Candidate]:
    """The `top` best by prediction (all without it) and the chosen one, in cut order."""
    measured = ranked[:top] if top else list(ranked)
    if all(c.cut.id != chosen.cut.id for c in measured):
        measured.insert(0, chosen)
    return sorted(measured, key=lambda c: c.cut.id)


def _priced_in(analysis: Analysis, plan: Plan, codec: str, reply_codec: str) -> Plan:
    """`plan` with every cut predicted at its tensors' bytes in `codec` (on the input the cuts are verified on),
    and the best chosen again on those predictions."""
    require_self_describing(codec, "--sweep --codec")
    priced, _, _ = priced_with(analysis, plan, codec, [random_inputs(analysis.graph)], reply_spec=reply_codec)
    return dataclasses.replace(priced, chosen=best_candidate((c for c in priced.candidates if c.feasible), plan.objective))


def _write_cuts(analysis: Analysis, plan: Plan, measured: list[Candidate], folder: Path,
                progress: Callable[[str, int, int], None] | None, codecs: tuple[str, str]) -> dict[str, np.ndarray]:
    """Write and verify every measured cut, `codecs` the request's and the answer's; the unsplit model's outputs on
    the bench input."""
    reference = None
    for index, candidate in enumerate(measured):
        if progress:
            progress("writing the cuts", index, len(measured))
        document = write_split(analysis, dataclasses.replace(plan, chosen=candidate, forced=True),
                               folder / f"cut{candidate.cut.id}", codec=codecs[0], reply_codec=codecs[1])
        if reference is None:  # every cut of one model gets the same input: run the unsplit model once
            reference = reference_outputs(analysis.graph, plan_feeds(document, BenchOptions.seed))
    assert reference is not None
    return reference


def _measure_rounds(folder: Path, measured: list[Candidate], link: LinkSettings, slowdown: float | None,
                    reference: dict[str, np.ndarray], requests: int, rounds: int, *, timeout_s: float, stream: bool,
                    progress: Callable[[str, int, int], None] | None) -> dict[int, list[SplitBenchReport]]:
    """Each round visits every cut with its share of the requests: a slow stretch falls on all cuts alike."""
    shares = [requests // rounds + (1 if r < requests % rounds else 0) for r in range(rounds)]
    reports: dict[int, list[SplitBenchReport]] = {c.cut.id: [] for c in measured}
    visits = [(r, c) for r in range(rounds) for c in measured]
    for visit, (r, candidate) in enumerate(visits):
        if progress:
            progress("cuts x rounds", visit, len(visits))
        options = BenchOptions(requests=shares[r], slowdown=slowdown, timeout_s=timeout_s, baselines=False,
                               stream=stream)
        reports[candidate.cut.id].append(run_bench(folder / f"cut{candidate.cut.id}", link, options,
                                                   reference=reference))
    if progress:
        progress("cuts x rounds", len(visits), len(visits))
    return reports


def _point(candidate: Candidate, objective: str, reports: list[SplitBenchReport]) -> SweepPoint:
    """One cut's measurement from its rounds: medians over every ok request (latency) or over rounds (throughput)."""
    def median_of(stage: str) -> float:
        values = [v for report in reports for v in report.samples[stage]]
        return statistics.median(values) if values else float("nan")

    ok = sum(report.ok for report in reports)
    if objective == "latency":
        value = median_of("e2e_s") if ok else None
    else:
        periods = [1.0 / r.stream.throughput_fps for r in reports
                   if r.stream is not None and r.stream.ok >= 2 and r.stream.throughput_fps > 0]
        value = statistics.median(periods) if periods else None
    p = candidate.predicted
    return SweepPoint(
        cut_id=candidate.cut.id,
        tensors=tuple(candidate.cut.tensors),
        after_node=candidate.cut.last_device_node,
        bytes=candidate.cut.bytes,
        predicted_s=predicted_seconds(candidate, objective),
        measured_s=value,
        # A codec's decoding (the request's on the server, the answer's on the device) joins the server's stage.
        predicted=StageSeconds(p.device_s + p.encode_s, p.transfer_s, p.server_s + p.decode_s),
        measured=StageSeconds(median_of("device_s") + median_of("encode_s"), median_of("transfer_s"),
                              median_of("server_s") + median_of("decode_s"), median_of("e2e_s")),
        ok=ok,
        errors=sum(report.errors for report in reports),
        slowdown=reports[0].slowdown.factor,
        outputs_match=all(report.outputs_match for report in reports) if reports else None,
    )


def _brief(point: SweepPoint) -> PointBrief:
    return PointBrief(point.cut_id, point.tensors, point.after_node, point.predicted_s, point.measured_s)

"""Cuts for a link that moves: the best cut at every bandwidth of a range, and the best one cut over a trace.

A cut's predicted latency depends on the uplink rate b (the downlink moving in
the link's ratio) as a line in 1/b:

    latency(b) = fixed_s + wire_bits / b

fixed_s is the device, encode and server time plus the round trip (when the
cut sends anything); wire_bits is what crosses, request and reply, in uplink
bits (planning.predict's model, taken back from its prediction at the plan's
link). The best cut over a range of rates is then the lower envelope of these
lines, found exactly, edge by edge: from the fastest rate down, the next cut
is the one whose line crosses the current one first. That is what an adaptive
plan keeps (issue 13), each cut with the interval of rates where it is best.

Over a trace, each cut's latencies at the trace's rates are weighed by how
long each rate lasts: the one cut with the best mean (or percentile) is the
static choice for that link, beside the one the typical rate alone gives.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

import numpy as np

from splitnn.cost_models.link_traces import Trace, time_weights
from splitnn.cost_models.prediction import Prediction
from splitnn.onnxsplit.artifacts.plan_file import RangeCutRecord, TraceChoiceRecord
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.vertical.planning import Candidate, Plan


class Priced(Protocol):
    """What a latency line is drawn for: a cut and its prediction (a planning Candidate, an adaptive plan's kept
    cut)."""

    @property
    def predicted(self) -> Prediction: ...


C = TypeVar("C", bound=Priced)


@dataclass(frozen=True)
class LatencyLine(Generic[C]):
    """A cut's predicted latency as a function of the uplink rate."""

    candidate: C
    fixed_s: float
    wire_bits: float  # request and reply, in uplink bits: seconds = wire_bits / uplink_bps

    def seconds(self, uplink_bps: float) -> float:
        return self.fixed_s + self.wire_bits / uplink_bps


@dataclass(frozen=True)
class KeptCut:
    """A cut (its latency line) that is best for the uplink rates [low_bps, high_bps]."""

    line: LatencyLine[Candidate]
    low_bps: float
    high_bps: float

    @property
    def candidate(self) -> Candidate:
        return self.line.candidate


def latency_lines(plan: Plan) -> list[LatencyLine[Candidate]]:
    """One line per feasible candidate of `plan` (made with the latency objective at a typical link)."""
    link = plan.link
    lines = []
    for candidate in plan.candidates:
        if not candidate.feasible:
            continue
        p = candidate.predicted
        sends = bool(candidate.cut.tensors)
        rtt = link.rtt_s if sends else 0.0
        wire_s = p.transfer_s - rtt if sends else 0.0  # up bits / uplink + down bits / downlink
        lines.append(LatencyLine(candidate, p.total_s - wire_s, wire_s * link.uplink_bps))
    if not lines:
        raise SplitnnError("no feasible cut: relax the constraints")
    return lines


def best_over_range(lines: Sequence[LatencyLine[Candidate]], low_bps: float, high_bps: float) -> list[KeptCut]:
    """The lower envelope of `lines` over uplink rates [low_bps, high_bps], fastest rate first: each cut that is
    best somewhere, with the interval where it is (exact; ties go to the cut that sends less)."""
    if not 0 < low_bps <= high_bps:
        raise SplitnnError(f"a bandwidth range needs 0 < low <= high, got {low_bps / 1e6:g}-{high_bps / 1e6:g} Mbit/s")
    x, x_end = 1 / high_bps, 1 / low_bps  # x = 1 / rate: the lines are straight in x
    current = min(lines, key=lambda line: (line.fixed_s + line.wire_bits * x, line.wire_bits))
    kept = []
    while True:
        crossings = [((line.fixed_s - current.fixed_s) / (current.wire_bits - line.wire_bits), line.wire_bits, i)
                     for i, line in enumerate(lines) if line.wire_bits < current.wire_bits]
        ahead = [(at, bits, i) for at, bits, i in crossings if at > x]
        at, _, nxt = min(ahead, default=(x_end, 0.0, -1))
        kept.append(KeptCut(current, 1 / min(at, x_end), 1 / x))
        if nxt < 0 or at >= x_end:
            return kept
        x, current = at, lines[nxt]


def plan_over_range(plan: Plan, low_bps: float, high_bps: float) -> Plan:
    """`plan` with the cuts that are best somewhere in [low_bps, high_bps] recorded (its chosen cut unchanged)."""
    kept = best_over_range(latency_lines(plan), low_bps, high_bps)
    records = tuple(RangeCutRecord(k.candidate.cut.id, tuple(k.candidate.cut.tensors), k.low_bps, k.high_bps,
                                   k.line.fixed_s, k.line.wire_bits) for k in kept)
    return replace(plan, over_range=records)


def plan_over_trace(plan: Plan, trace: Trace, trace_name: str, percentile: float | None = None) -> Plan:
    """`plan` (latency objective, at the typical link) with its chosen cut replaced by the one best over `trace`,
    and the comparison with the typical rate's choice recorded."""
    choice = best_over_trace(latency_lines(plan), time_weights(trace), plan.link.uplink_bps, percentile)
    record = TraceChoiceRecord(trace_name, len(trace), choice.statistic, choice.expected_s,
                               choice.typical.candidate.cut.id, choice.typical_expected_s)
    return replace(plan, chosen=choice.chosen.candidate, over_trace=record)


@dataclass(frozen=True)
class TraceChoice:
    """The one cut that is best over a trace, beside the cut the typical rate alone would give."""

    chosen: LatencyLine[Candidate]
    expected_s: float  # the chosen cut's mean (or percentile) latency over the trace
    typical: LatencyLine[Candidate]  # best at the plan's own link
    typical_expected_s: float  # that cut's figure over the trace
    statistic: str  # "mean" or "p95" etc.


def best_over_trace(lines: Sequence[LatencyLine[Candidate]], weights: Sequence[tuple[float, float]], typical_bps: float,
                    percentile: float | None = None) -> TraceChoice:
    """The line with the best time-weighted mean latency over `weights` ((rate, seconds) per trace step), or the
    best `percentile` of it."""
    rates = np.array([bps for bps, _ in weights])
    seconds = np.array([s for _, s in weights])

    def figure(line: LatencyLine[Candidate]) -> float:
        latencies = line.fixed_s + line.wire_bits / rates
        if percentile is None:
            return float(np.average(latencies, weights=seconds))
        order = np.argsort(latencies)
        cumulative = np.cumsum(seconds[order]) / seconds.sum()
        return float(latencies[order][np.searchsorted(cumulative, percentile / 100 - 1e-12)])

    scored = [(figure(line), line.wire_bits, i) for i, line in enumerate(lines)]
    expected, _, best = min(scored)
    typical = min(range(len(lines)), key=lambda i: (lines[i].seconds(typical_bps), lines[i].wire_bits))
    return TraceChoice(lines[best], expected, lines[typical], scored[typical][0],
                       "mean" if percentile is None else f"p{percentile:g}")

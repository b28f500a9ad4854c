"""run-bench on an adaptive plan: the device picks a cut per request from its own bandwidth estimate, over an
emulated link that moves (a trace), and answers alone when the deadline says so (issue 13, items 2-4 and 7).

Per request: the estimate (runtime/bandwidth.py; the plan's typical rate while
there is no fresh one) picks a kept cut with hysteresis; the device graph runs
that cut's tensors, which go to the server graph of that cut (one server holds
them all and answers with the one that reads what came). Each answered request
updates the estimate; a failed one bounds it.

With a deadline, every request is answered in time if the device can hold the
whole model: a cut whose predicted latency at the estimate misses the deadline
is not tried, the device answering from the start instead; and the server gets
what the deadline leaves once the device could still finish from the tensor
it computed (the whole model's predicted time on the board less the part
already run). When it does not answer in that time, the device finishes the
request itself, and the connection is dropped so that a late answer is never
taken for a later request's. The board's compute is emulated as in run-bench:
each part waits until its predicted time has passed; a local finish from the
tensor runs the whole model on this host and waits for the predicted rest.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.cost_models.link_traces import rate_at
from splitnn.onnxsplit.artifacts.bench_inputs import inputs_and_reference
from splitnn.onnxsplit.artifacts.plan_file import AdaptiveCutRecord, AdaptivePlanFile, read_plan
from splitnn.onnxsplit.artifacts.verification import compare_outputs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.runtime.bandwidth import BandwidthEstimator, CutChooser
from splitnn.onnxsplit.runtime.device import DeviceClient
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, LinkSettings
from splitnn.onnxsplit.runtime.server import PROBE_TENSOR, ModelServer
from splitnn.onnxsplit.vertical.link_range import LatencyLine

PROBE_BYTES = 16 * 1024  # a cheap probe: 16 kB up, an empty answer back
DEADLINE_MARGIN = 0.05  # of the deadline, kept for this host's own overheads (sessions, sockets, threads)


@dataclass(frozen=True)
class AdaptiveBenchOptions:
    requests: int = 40
    deadline_s: float | None = None
    timeout_s: float = 30.0  # without a deadline: how long an answer may take before the request fails
    seed: int = 0
    duration_s: float | None = None  # stop after this long instead of after `requests` (a trace's replay)
    hold_cut: int | None = None  # a static run: this kept cut for every request (--compare-static)


@dataclass(frozen=True)
class RequestPoint(Record):
    """One request: when, what the device believed and used, what the link really was, how it ended."""

    t_s: float
    estimate_bps: float | None
    true_bps: float | None  # the trace's rate at that moment (None without a trace)
    cut_id: int
    answered: str  # "remote", "local" or "error"
    e2e_s: float


@dataclass(frozen=True)
class Latencies(Record):
    p50: float
    p95: float
    p99: float
    mean: float


@dataclass(frozen=True)
class AdaptiveBenchReport(Record):
    plan: str
    requests: int
    answered_remote: int
    answered_local: int
    errors: int
    deadline_s: float | None
    deadline_missed: int
    e2e_s: Latencies
    requests_per_cut: dict[str, int]
    switches: int
    probes: int  # bandwidth probes sent while no estimate was fresh
    outputs_match: bool | None
    max_abs_err: float | None
    link: str
    points: tuple[RequestPoint, ...]
    held_cut: int | None = None  # a static run's cut (None: adaptive)
    static: tuple[AdaptiveBenchReport, ...] = ()  # --compare-static: the same replay with each cut held


class _CutView:
    """One kept cut through the shared device graph (duck-types DevicePart for DeviceClient)."""

    def __init__(self, session: Any, plan: AdaptivePlanFile, kept: AdaptiveCutRecord) -> None:
        made = set(plan.device.outputs)
        self.session, self.inputs = session, list(plan.device.inputs)
        self.server_empty = kept.server_model is None
        self.sends = list(kept.server.inputs)
        self.keeps = [o for o in plan.outputs if o in made and (self.server_empty or o not in kept.server.outputs)]
        self.outputs = list(dict.fromkeys([*(t for t in kept.cut.tensors if t in made), *self.keeps]))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.outputs:
            return {}  # this cut sends the model's input as it came
        return dict(zip(self.outputs, self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})))


def compare_static(outdir: str | Path, link: LinkSettings, options: AdaptiveBenchOptions,
                   progress: Callable[[str, int, int], None] | None = None) -> AdaptiveBenchReport:
    """The adaptive run, then the same replay with each kept cut held fixed (all on the device among them)."""
    import dataclasses

    adaptive = run_adaptive_bench(outdir, link, options, progress)
    plan = read_plan(outdir, "adaptive")
    assert isinstance(plan, AdaptivePlanFile)
    static = tuple(run_adaptive_bench(outdir, link, dataclasses.replace(options, hold_cut=k.cut.id), progress)
                   for k in plan.kept)
    return dataclasses.replace(adaptive, static=static)


def run_adaptive_bench(outdir: str | Path, link: LinkSettings, options: AdaptiveBenchOptions,
                       progress: Callable[[str, int, int], None] | None = None) -> AdaptiveBenchReport:
    """Measure the adaptive plan in `outdir` under `link` (see the module doc)."""
    outdir = Path(outdir)
    plan = read_plan(outdir, "adaptive")
    assert isinstance(plan, AdaptivePlanFile)
    alone = next((k for k in plan.kept if k.server_model is None), None)
    if options.deadline_s is not None:
        if alone is None:
            raise SplitnnError("--deadline needs a device that can answer alone, and this plan's device cannot hold "
                               "the whole model: drop --deadline")
        if options.deadline_s < alone.predicted.device_s:
            raise SplitnnError(f"--deadline {options.deadline_s * 1e3:g} ms is shorter than the device's own fastest "
                               f"answer ({alone.predicted.device_s * 1e3:.1f} ms predicted): give a longer deadline")
    feeds, reference = inputs_and_reference(outdir, plan, options.seed)
    session = create_session(outdir / (plan.artifacts.device_ort or plan.artifacts.device_model), spin=False)
    views = {k.cut.id: _CutView(session, plan, k) for k in plan.kept}
    servers = [outdir / k.server_model for k in plan.kept if k.server_model]
    with ModelServer(servers or None, spin=False).start() as server, LinkRelay(server.address, link) as relay:
        client = DeviceClient(views[plan.kept[0].cut.id], relay.address, timeout_s=options.timeout_s)  # type: ignore[arg-type]
        loop = _Loop(plan, views, client, link, options, alone)
        count = 0
        while (count < options.requests if options.duration_s is None
               else time.perf_counter() - loop.start < options.duration_s):
            loop.one(feeds)
            count += 1
            if progress:
                progress("requests" if options.duration_s is None else "requests (timed run)", count,
                         options.requests if options.duration_s is None else count + 1)
        client.close()
    return loop.report(outdir, reference)


class _Loop:
    """The device's loop: estimate, choose, run, answer (remote or local), learn."""

    def __init__(self, plan: AdaptivePlanFile, views: dict[int, _CutView], client: DeviceClient, link: LinkSettings,
                 options: AdaptiveBenchOptions, alone: AdaptiveCutRecord | None) -> None:
        self.plan, self.views, self.client, self.link, self.options, self.alone = plan, views, client, link, options, alone
        self.estimator = BandwidthEstimator(plan.link.rtt_s, plan.link.down_bps / plan.link.uplink_bps)
        held = [k for k in plan.kept if options.hold_cut in (None, k.cut.id)]
        if not held:
            raise SplitnnError(f"cut {options.hold_cut} is not one of the plan's kept cuts "
                               f"({', '.join(str(k.cut.id) for k in plan.kept)})")
        self.chooser = CutChooser([LatencyLine(k, k.fixed_s, k.wire_bits) for k in held])  # type: ignore[arg-type]
        self.start = time.perf_counter()
        self.points: list[RequestPoint] = []
        self.last_outputs: dict[str, np.ndarray] = {}
        self.probes = 0

    def one(self, feeds: dict[str, np.ndarray]) -> None:
        if self.options.hold_cut is None and self.estimator.estimate(time.perf_counter() - self.start).stale:
            self._probe()
        t = time.perf_counter() - self.start
        estimate = self.estimator.estimate(t)
        bps = estimate.bps if estimate.bps is not None and not estimate.stale else self.plan.link.uplink_bps
        rtt_change = self.estimator.rtt_s - self.plan.link.rtt_s  # the lines were drawn for the planned round trip
        line = self.chooser.choose(bps, rtt_change)
        kept: AdaptiveCutRecord = line.candidate  # type: ignore[assignment]
        begin = time.perf_counter()
        predicted = self.chooser.predicted_s(line, bps, rtt_change)
        too_slow = self.options.hold_cut is None and predicted > self._remote_budget(kept) + kept.predicted.device_s
        if kept.server_model is None or too_slow:  # a held cut is always tried: the deadline still catches it
            answered = self._local(feeds, begin, 0.0)
        else:
            answered = self._remote(kept, feeds, begin)
        self.points.append(RequestPoint(t, estimate.bps, rate_at(self.link.trace, t) if self.link.trace else self.link.uplink_bps, kept.cut.id, answered,
                                        time.perf_counter() - begin))

    def _remote_budget(self, kept: AdaptiveCutRecord) -> float:
        """How long the server may take to answer a request at `kept` (after the device part ran): what the
        deadline leaves once the device could still finish from the tensor it computed, less a margin."""
        deadline = self.options.deadline_s
        if deadline is None or self.alone is None:
            return self.options.timeout_s
        rest = self.alone.predicted.device_s - kept.predicted.device_s  # finishing from the tensor at hand
        return deadline * (1 - DEADLINE_MARGIN) - kept.predicted.device_s - rest

    def _probe(self) -> None:
        """No fresh estimate (the device answered alone for a while, or it just started): between requests, a
        one-byte probe measures the round trip, then PROBE_BYTES measure the rate."""
        self.client.set_timeout(self.options.timeout_s)
        tiny = self.client.exchange({PROBE_TENSOR: np.zeros(1, np.uint8)})
        if tiny.ok:
            self.estimator.observe_round_trip(tiny.transfer_s)
        result = self.client.exchange({PROBE_TENSOR: np.zeros(PROBE_BYTES, np.uint8)})
        at = time.perf_counter() - self.start
        if result.ok:
            self.estimator.observe(result.bytes_up, result.bytes_down, result.transfer_s, at)
        else:
            self.estimator.observe_failure(result.bytes_up, result.e2e_s, at)
            self.client.close()
        self.probes += 1

    def _remote(self, kept: AdaptiveCutRecord, feeds: dict[str, np.ndarray], begin: float) -> str:
        self.client.part = self.views[kept.cut.id]  # type: ignore[assignment]
        self.client.board_s = kept.predicted.device_s
        self.client.set_timeout(max(self._remote_budget(kept), 1e-3))
        result = self.client.request(feeds)
        if result.ok:
            self.estimator.observe(result.bytes_up, result.bytes_down, result.transfer_s, time.perf_counter() - self.start)
            self.last_outputs = result.outputs
            return "remote"
        self.estimator.observe_failure(result.bytes_up or kept.cut.bytes, result.e2e_s - result.device_s,
                                       time.perf_counter() - self.start)
        self.client.close()  # a late answer must never be read as a later request's: the next one reconnects
        if self.options.deadline_s is None or self.alone is None:
            return "error"
        return self._local(feeds, begin, kept.predicted.device_s)

    def _local(self, feeds: dict[str, np.ndarray], begin: float, done_s: float) -> str:
        """The device answers alone: the whole model, the board's predicted time less `done_s` already run."""
        if self.alone is None:
            return "error"
        self.client.part = self.views[self.alone.cut.id]  # type: ignore[assignment]
        self.client.board_s = self.alone.predicted.device_s - done_s
        self.last_outputs = self.client.compute(feeds)[0]  # waits, as for any part, for the board's time
        return "local"

    def report(self, outdir: Path, reference: dict[str, np.ndarray] | None) -> AdaptiveBenchReport:
        answered = [p for p in self.points if p.answered != "error"]
        e2e = np.array([p.e2e_s for p in answered]) if answered else np.array([float("nan")])
        max_err, match = (compare_outputs(self.last_outputs, reference, self.plan.verification.atol,
                                          self.plan.verification.rtol) if reference is not None and self.last_outputs
                          else (None, None))
        per_cut = dict(Counter(str(p.cut_id) for p in self.points))
        deadline = self.options.deadline_s
        return AdaptiveBenchReport(
            plan=str(outdir), requests=len(self.points),
            answered_remote=sum(p.answered == "remote" for p in self.points),
            answered_local=sum(p.answered == "local" for p in self.points),
            errors=sum(p.answered == "error" for p in self.points), deadline_s=deadline,
            deadline_missed=sum(1 for p in answered if deadline is not None and p.e2e_s > deadline),
            e2e_s=Latencies(*(float(np.percentile(e2e, q)) for q in (50, 95, 99)), float(statistics.fmean(e2e))),
            requests_per_cut=per_cut, switches=self.chooser.switches, probes=self.probes, outputs_match=match,
            max_abs_err=max_err,
            link=self.link.describe(), points=tuple(self.points), held_cut=self.options.hold_cut,
        )

"""run-bench on an adaptive plan: the device (runtime/adaptive_device.py) picks a cut per request from its own
bandwidth estimate, over an emulated link that moves (a trace), and answers alone when the deadline says so
(issue 13, items 2-4 and 7).

The board's compute is emulated as in run-bench: each part, and each finish
on the device, waits until its predicted time has passed. `--compare-static`
replays the same link with each kept cut held fixed.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitnn.cost_models.link_traces import rate_at
from splitnn.onnxsplit.artifacts.bench_inputs import inputs_and_reference
from splitnn.onnxsplit.artifacts.plan_file import AdaptivePlanFile, read_plan
from splitnn.onnxsplit.artifacts.verification import compare_outputs
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.runtime.adaptive_device import AdaptiveDevice, HeldBack, RequestPoint
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, LinkSettings
from splitnn.onnxsplit.runtime.server import ModelServer

__all__ = ["AdaptiveBenchOptions", "AdaptiveBenchReport", "HeldBackCount", "Latencies", "RequestPoint",
           "compare_static", "run_adaptive_bench"]


@dataclass(frozen=True)
class AdaptiveBenchOptions:
    requests: int = 40
    deadline_s: float | None = None
    timeout_s: float = 30.0  # without a deadline: how long an answer may take before the request fails
    seed: int = 0
    duration_s: float | None = None  # stop after this long instead of after `requests` (a trace's replay)
    hold_cut: int | None = None  # a static run: this kept cut for every request (--compare-static)


@dataclass(frozen=True)
class Latencies(Record):
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, seconds: np.ndarray) -> Latencies:
        """The percentiles and the mean of `seconds`."""
        p50, p95, p99 = (float(np.percentile(seconds, q)) for q in (50, 95, 99))
        return cls(p50, p95, p99, float(statistics.fmean(seconds)))


@dataclass(frozen=True)
class HeldBackCount(Record):
    """Requests the board answered alone although the estimate chose a cut that sends: that cut, why nothing was
    sent (runtime/adaptive_device.HeldBack's reasons), how often, and the medians of what the deadline left the
    link and the server there against what they were predicted to take."""

    cut_id: int
    reason: str
    requests: int
    budget_s: float
    needed_s: float


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
    requests_per_cut: dict[str, int]  # by the cut that answered (the board alone's where nothing was sent)
    switches: int
    probes: int  # bandwidth probes sent while no estimate was fresh
    outputs_match: bool | None
    max_abs_err: float | None
    link: str
    points: tuple[RequestPoint, ...]
    held_cut: int | None = None  # a static run's cut (None: adaptive)
    static: tuple[AdaptiveBenchReport, ...] = ()  # --compare-static: the same replay with each cut held
    held_back: tuple[HeldBackCount, ...] = ()  # the requests that sent nothing at the cut chosen, by cut and why
    trace: tuple[tuple[float, float], ...] = ()  # the link's (time_s, bps) steps, where it followed a trace


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
    feeds, reference = inputs_and_reference(outdir, plan, options.seed)
    true_rate = (lambda t: rate_at(link.trace, t)) if link.trace else (lambda t: link.uplink_bps)
    with ModelServer.from_plan(outdir, spin=False).start() as server:
        device = AdaptiveDevice(outdir, plan, server.address, deadline_s=options.deadline_s, timeout_s=options.timeout_s,
                                hold_cut=options.hold_cut, emulate_board=True, true_rate=true_rate)
        with LinkRelay(server.address, link) as relay:  # the trace's clock starts once the device is ready
            device.restart(relay.address)
            count = 0
            while (count < options.requests if options.duration_s is None
                   else time.perf_counter() - device.start < options.duration_s):
                device.request(feeds)
                count += 1
                if progress:
                    progress("requests" if options.duration_s is None else "requests (timed run)", count,
                             options.requests if options.duration_s is None else count + 1)
            device.close()
    return _report(device, outdir, link, reference)


def _report(device: AdaptiveDevice, outdir: Path, link: LinkSettings,
            reference: dict[str, np.ndarray] | None) -> AdaptiveBenchReport:
    answered = [p for p in device.points if p.answered != "error"]
    e2e = np.array([p.e2e_s for p in answered]) if answered else np.array([float("nan")])
    counts = device.counts()
    # A kept cut's codec may move the outputs as far as partition measured it to (on the verification input).
    codec_err = max((k.codec.bench_abs_err for k in device.plan.kept if k.codec is not None), default=0.0)
    if device.plan.reply_codec is not None:  # the answer's codec, on top
        codec_err += device.plan.reply_codec.max_abs_err * 1.01
    max_err, match = (compare_outputs(device.last_outputs, reference, device.plan.verification.atol + codec_err,
                                      device.plan.verification.rtol) if reference is not None and device.last_outputs
                      else (None, None))
    per_cut = dict(Counter(str(p.cut_id) for p in device.points))
    held: dict[tuple[int, str], list[HeldBack]] = {}
    for p in device.points:
        if p.held_back is not None:
            held.setdefault((p.held_back.cut_id, p.held_back.reason), []).append(p.held_back)
    held_back = tuple(HeldBackCount(cut, reason, len(holds), statistics.median(h.budget_s for h in holds),
                                    statistics.median(h.needed_s for h in holds))
                      for (cut, reason), holds in held.items())
    return AdaptiveBenchReport(
        plan=str(outdir), requests=len(device.points), answered_remote=counts.remote, answered_local=counts.local,
        errors=counts.errors, deadline_s=device.deadline_s, deadline_missed=counts.deadline_missed,
        e2e_s=Latencies.of(e2e),
        requests_per_cut=per_cut, switches=device.switches, probes=device.probes, outputs_match=match,
        max_abs_err=max_err,
        link=link.describe(), points=tuple(device.points), held_cut=device.hold_cut, held_back=held_back,
        trace=tuple(link.trace),
    )

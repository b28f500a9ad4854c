"""run-bench as one job: a plan folder (or, for a sweep, a model) measured on this machine against its prediction.

The command line (cli/run_bench.py) and the API (api.run_bench) both run these; they differ only in how they
show the report. The one rule for the link a split is measured over: a named link as given (its bandwidth and
round trip overridden where given), else the link the plan was made for with the user's overrides (a bandwidth
given applies both ways; the plan's round trip is kept unless one is given), with the impairments on top.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitnn.cost_models.profiles import LinkProfile
from splitnn.onnxsplit.core.errors import SplitnnError

if TYPE_CHECKING:
    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport
    from splitnn.onnxsplit.measure.pipeline import PipelineBenchReport
    from splitnn.onnxsplit.measure.split_report import SplitBenchReport
    from splitnn.onnxsplit.measure.sweep import SweepReport
    from splitnn.onnxsplit.runtime.link_emulator import LinkSettings

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LinkEmulation:
    """The link a bench emulates: a named one or overrides (None: the plan's own), and its impairments."""

    name: str | None = None
    bandwidth_bps: float | None = None  # both ways
    rtt_s: float | None = None
    jitter_s: float = 0.0  # of each one-way delay
    loss: float = 0.0  # probability that a packet stalls one RTO
    outages: tuple[tuple[float, float], ...] = ()  # (start, end) seconds the link is down
    trace: tuple[tuple[float, float], ...] = ()  # (time_s, bits per second) steps


def outage_windows(texts: Sequence[str]) -> tuple[tuple[float, float], ...]:
    """'START-END' seconds (e.g. 2-4.5) as (start, end) windows."""
    windows = []
    for text in texts:
        try:
            start, end = (float(v) for v in text.split("-"))
        except ValueError:
            raise SplitnnError(f"--outage '{text}' must be START-END in seconds, e.g. 2-4.5") from None
        if not 0 <= start < end:
            raise SplitnnError(f"--outage '{text}': START must be below END, both from 0")
        windows.append((start, end))
    return tuple(windows)


def emulated_settings(planned: LinkProfile | None, link: LinkEmulation) -> LinkSettings:
    """The emulator's settings for `link` (see the module doc); `planned`: the plan's own link (None: a sweep,
    whose link is `link.name`, else 4G)."""
    from splitnn.cost_models.catalog import load_link
    from splitnn.onnxsplit.runtime.link_emulator import settings_for

    if link.name or planned is None:
        if link.name is None and link.bandwidth_bps is not None and link.rtt_s is None:
            raise SplitnnError("--bandwidth without --link needs --rtt (e.g. --rtt 40ms), or start from a preset: "
                               "--link 4g --bandwidth ...")
        chosen = load_link(link.name or (None if link.bandwidth_bps else "4g"), link.bandwidth_bps, link.rtt_s)
    else:
        bps = link.bandwidth_bps
        chosen = dataclasses.replace(planned, uplink_bps=planned.uplink_bps if bps is None else bps,
                                     downlink_bps=planned.down_bps if bps is None else bps,
                                     rtt_s=planned.rtt_s if link.rtt_s is None else link.rtt_s)
    return settings_for(chosen.uplink_bps, chosen.rtt_s, downlink_bps=chosen.down_bps, jitter_s=link.jitter_s,
                        loss=link.loss, outages=link.outages, trace=link.trace)


@dataclass(frozen=True)
class BenchChoice:
    """How a split (or an adaptive plan) is measured."""

    requests: int = 20
    slowdown: float | None = None  # None: each part made to take its profile's predicted time; K: this host's x K
    timeout_s: float = 30.0
    baselines: bool = True  # also all on the device and all on the server
    stream: bool = False  # also pipeline the frames
    fps: float | None = None  # with stream: frames offered per second
    deadline_s: float | None = None  # adaptive plans: answer every request within this time
    duration_s: float | None = None  # adaptive plans: a timed run instead of `requests`
    compare_static: bool = False  # adaptive plans: the same replay with each kept cut held
    tls: bool = False  # the split's connection in TLS
    kill_stage: str | None = None  # pipeline plans: the machine whose stage process is killed mid-stream
    failover: bool = False  # pipeline plans: after a stage drops, the source answers alone
    time_scale: float | None = None  # pipeline plans: every time of the run dilated by this (None: 1)

    def __post_init__(self) -> None:
        if self.fps is not None and not self.stream:
            raise SplitnnError("--fps paces a stream: add --stream")
        if self.tls and self.stream:  # one TLS connection read and written from two threads is not safe in ssl
            raise SplitnnError("--tls measures the requests one at a time: drop --stream")
        if self.slowdown is not None and self.slowdown < 1:
            raise SplitnnError("--device-slowdown must be at least 1 (this host cannot be made faster)")


def _split_options_given(link: LinkEmulation, bench: BenchChoice, apply_here: frozenset[str] = frozenset()
                         ) -> list[str]:
    """The link's and a two-part split's options the user gave, by flag, but those in `apply_here` (those with a
    default of their own, --requests and --timeout, cannot be told from it)."""
    return [flag for flag, value in (
        ("--link", link.name), ("--bandwidth", link.bandwidth_bps), ("--rtt", link.rtt_s),
        ("--jitter", link.jitter_s or None), ("--loss", link.loss or None), ("--outage", link.outages or None),
        ("--trace", link.trace or None), ("--device-slowdown", bench.slowdown), ("--no-baselines", not bench.baselines or None),
        ("--stream", bench.stream or None), ("--fps", bench.fps), ("--deadline", bench.deadline_s),
        ("--duration", bench.duration_s), ("--compare-static", bench.compare_static or None), ("--tls", bench.tls or None),
        ("--kill-stage", bench.kill_stage), ("--failover", bench.failover or None), ("--time-scale", bench.time_scale),
    ) if value is not None and flag not in apply_here]


def refuse_on_tiles(link: LinkEmulation, bench: BenchChoice) -> None:
    """A tile plan runs on Dask, not over an emulated link: the link's and the split's options given are refused,
    each named."""
    given = _split_options_given(link, bench)
    if given:
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a split over an emulated "
                           "link; a tile plan runs on Dask: drop "
                           f"{'it' if len(given) == 1 else 'them'}")


# What a pipeline plan's bench takes of the options above.
_PIPELINE_BENCH_OPTIONS = frozenset({"--no-baselines", "--stream", "--kill-stage", "--failover", "--time-scale"})


def bench_pipeline(outdir: str | Path, link: LinkEmulation, bench: BenchChoice, progress: Progress | None = None
                   ) -> PipelineBenchReport:
    """A pipeline plan's stages as processes over the plan's own links, emulated (measure/pipeline.py), then its
    two baselines the same way unless `bench.baselines` is off or a stage is dropped (measure/pipeline_baselines.py);
    the link's options and those of a two-part split are refused, each named."""
    from splitnn.onnxsplit.measure.pipeline import run_pipeline_bench
    from splitnn.onnxsplit.measure.pipeline_baselines import run_baselines

    given = _split_options_given(link, bench, _PIPELINE_BENCH_OPTIONS)
    if given:
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a split over one "
                           "emulated link; a pipeline plan runs over the links of its machines file: drop "
                           f"{'it' if len(given) == 1 else 'them'}")
    if (bench.kill_stage is not None or bench.failover) and not bench.stream:
        raise SplitnnError("--kill-stage and --failover drop a stage in the middle of a stream: add --stream")
    if bench.failover and bench.kill_stage is None:
        raise SplitnnError("--failover answers after a stage drops: name the stage to drop with --kill-stage MACHINE")
    scale = 1.0 if bench.time_scale is None else bench.time_scale
    report = run_pipeline_bench(outdir, bench.requests, bench.stream, bench.timeout_s, progress,
                                drop=bench.kill_stage, failover=bench.failover, time_scale=scale)
    if not bench.baselines or bench.kill_stage is not None:
        return report
    runs, left_out = run_baselines(outdir, bench.requests, bench.stream, bench.timeout_s, progress, scale)
    return dataclasses.replace(report, baselines=runs, baselines_left_out=left_out)


def bench_split(outdir: str | Path, link: LinkEmulation, bench: BenchChoice, progress: Progress | None = None
                ) -> SplitBenchReport:
    """A vertical split's two parts as processes, over the emulated link."""
    from splitnn.onnxsplit.measure.vertical import BenchOptions, run_bench
    from splitnn.onnxsplit.runtime.device import DevicePart

    _refuse_adaptive_options(bench)
    _refuse_pipeline_options(bench)
    settings = emulated_settings(DevicePart(outdir).plan.link, link)
    options = BenchOptions(requests=bench.requests, slowdown=bench.slowdown, timeout_s=bench.timeout_s,
                           baselines=bench.baselines, stream=bench.stream, fps=bench.fps, tls=bench.tls)
    return run_bench(outdir, settings, options, progress)


def _refuse_pipeline_options(bench: BenchChoice) -> None:
    given = ", ".join(k for k, v in (("--kill-stage", bench.kill_stage), ("--failover", bench.failover or None),
                                     ("--time-scale", bench.time_scale)) if v is not None)
    if given:
        raise SplitnnError(f"{given} {'applies' if ',' not in given else 'apply'} to pipeline plans (splitnn partition "
                           "--machines)")


def _refuse_adaptive_options(bench: BenchChoice) -> None:
    adaptive_only = {"--deadline": bench.deadline_s, "--duration": bench.duration_s,
                     "--compare-static": bench.compare_static or None}
    given = ", ".join(k for k, v in adaptive_only.items() if v is not None)
    if given:
        raise SplitnnError(f"{given} applies to adaptive plans (splitnn partition --adaptive)")


def bench_adaptive(outdir: str | Path, link: LinkEmulation, bench: BenchChoice, progress: Progress | None = None
                   ) -> AdaptiveBenchReport:
    """An adaptive plan's device switching cuts as the emulated link moves (and, with compare_static, each kept
    cut held for the same replay)."""
    from splitnn.onnxsplit.artifacts.plan_file import read_adaptive_plan
    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchOptions, compare_static, run_adaptive_bench

    _refuse_pipeline_options(bench)
    settings = emulated_settings(read_adaptive_plan(outdir).link, link)
    options = AdaptiveBenchOptions(requests=bench.requests, deadline_s=bench.deadline_s, timeout_s=bench.timeout_s,
                                   duration_s=bench.duration_s)
    return (compare_static if bench.compare_static else run_adaptive_bench)(outdir, settings, options, progress)


@dataclass(frozen=True)
class SweepChoice:
    """A sweep's planning options (a plan folder has its own): what the candidate cuts are planned for."""

    top: int | None = None  # measure only the K best cuts by prediction (and the chosen one)
    rounds: int = 2
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    device: str = "rockpro64"
    server: str = "host"
    objective: str = "latency"
    max_device_share: float | None = None
    max_transfer_bytes: int | None = None
    codec: str = "none"
    reply_codec: str = "none"


def sweep_model(model: str | Path, sweep: SweepChoice, link: LinkEmulation, bench: BenchChoice,
                progress: Progress | None = None, planned: Callable[[Any], None] | None = None) -> SweepReport:
    """Every feasible cut of `model` (or the `sweep.top` best) written, verified and measured under one link;
    `planned` sees the plan before the runs."""
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.measure.sweep import sweep_cuts
    from splitnn.onnxsplit.jobs.choices import planning_inputs
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.vertical.planning import plan_split

    _refuse_adaptive_options(bench)
    settings = emulated_settings(None, link)
    inputs = planning_inputs(sweep.device, sweep.server, link.name, link.bandwidth_bps, link.rtt_s,
                             sweep.max_device_share, sweep.max_transfer_bytes)
    analysis = analyze(load_graph(str(model), sweep.input_shapes))
    plan = plan_split(analysis, inputs.device, inputs.server, inputs.link, sweep.objective, inputs.constraints)
    if planned is not None:
        planned(plan)
    return sweep_cuts(analysis, plan, settings, top=sweep.top, requests=bench.requests, rounds=sweep.rounds,
                      slowdown=bench.slowdown, timeout_s=bench.timeout_s, progress=progress, codec=sweep.codec,
                      reply_codec=sweep.reply_codec)

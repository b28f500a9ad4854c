"""`splitnn run-bench`: a plan end to end on this machine (a split over an emulated link, or tiles on Dask)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from splitnn.cli.bench_tables import render_split, render_sweep, render_tiles
from splitnn.cli.options import (
    BENCH,
    LINK_EMULATION,
    REPORT,
    SWEEP,
    TILE_BENCH,
    BenchChoice,
    LinkChoice,
    ReportChoice,
    SweepChoice,
    TileBenchChoice,
    use_groups,
)
from splitnn.cli.progress import Progress
from splitnn.cli.render import stderr, warn_unpriced

if TYPE_CHECKING:
    from splitnn.onnxsplit.bench.split_report import SplitBenchReport
    from splitnn.onnxsplit.bench.sweep import SweepReport


@click.command("run-bench")
@click.argument("target", metavar="OUTDIR|MODEL.onnx", type=click.Path())
@use_groups(LINK_EMULATION, BENCH, SWEEP, TILE_BENCH, REPORT)
def run_bench(target: str, link: LinkChoice, bench: BenchChoice, sweep: SweepChoice | None, tiles: TileBenchChoice,
              report: ReportChoice) -> None:
    """Run the plan in OUTDIR end to end over an emulated link and compare with the prediction.

    Starts the server part in a second process, a user-space link relay
    (bandwidth, delay, jitter, loss stalls, outages, traces; no root needed)
    and the device loop; reports p50/p95 per stage, the plan's prediction, the
    physical bound and the all-device / all-server baselines.

    With --sweep, TARGET is a model: every feasible cut (or the --top K by
    prediction) is written, verified and measured under the same link, and the
    report gives measured against predicted per cut, the chosen cut, the
    measured best and the regret (chosen / best, measured).

    \b
    Examples:
      splitnn run-bench out/vgg16
      splitnn run-bench out/vgg16 --link 3g --requests 50 --json
      splitnn run-bench out/vgg16 --bandwidth 20Mbit --rtt 30ms --jitter 5ms --loss 0.01
      splitnn run-bench out/vgg16 --trace lte.csv --outage 3-5
      splitnn run-bench out/vgg16 --stream --requests 50 [--fps 10]
      splitnn run-bench resnet18.onnx --sweep --link wifi --top 6 --plot sweep.png
      splitnn run-bench alexnet.onnx --sweep --link 3g --top 4 --codec int8+lossless
      splitnn run-bench out/adaptive --trace traces/wifi-to-3g.csv --deadline 160ms --requests 200
      splitnn run-bench out/adaptive --trace traces/wifi-to-3g.csv --duration 90 --plot timeline.png
      splitnn run-bench out/tiles                          (a tile plan: tiles on a local Dask cluster)
      splitnn run-bench out/tiles --scheduler tcp://10.0.0.1:8786 --images 20
      splitnn run-bench out/tiles --data-parallel --images 40
    """
    from splitnn.onnxsplit.core.errors import SplitnnError

    if sweep is not None and bench.stream:
        raise SplitnnError("--sweep measures streams itself with --objective throughput: drop --stream")
    if sweep is None:
        _warn_unpriced(target)
    if sweep is None and _is_tile_plan(target):
        if report.plot is not None:
            raise SplitnnError("--plot draws the split's stages; a tile plan prints its scaling table (use --json for data)")
        _tile_bench(target, tiles, report.as_json)
        return
    if tiles.given:
        raise SplitnnError(f"{', '.join(tiles.given)} {'applies' if len(tiles.given) == 1 else 'apply'} only to tile "
                           "plans (splitnn partition --strategy tiles)")
    if sweep is None and _strategy(target) == "adaptive":
        _adaptive_bench(target, link, bench, report.as_json, report.plot)
        return
    _refuse_adaptive_options(bench)
    with Progress() as progress:
        result = _sweep(target, sweep, link, bench, progress) if sweep else _bench(target, link, bench, progress)
    if report.plot is not None:
        _plot(report.plot, target, result, sweep is not None)
    if report.as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        _render(result)
    if report.plot is not None:
        stderr().print(f"plot written to {report.plot}")


def _warn_unpriced(outdir: str) -> None:
    """The plan's nodes priced at 0 s (an operator with no cost formula): its predictions, which the report shows,
    ignore their work."""
    from splitnn.onnxsplit.artifacts.plan_file import read_plan
    from splitnn.onnxsplit.core.errors import SplitnnError

    try:
        plan = read_plan(outdir)
    except SplitnnError:
        return  # the bench's own reading of the plan says what is wrong
    warn_unpriced(plan.unpriced_ops)


def _refuse_adaptive_options(bench: BenchChoice) -> None:
    from splitnn.onnxsplit.core.errors import SplitnnError

    adaptive_only = {"--deadline": bench.deadline_s, "--duration": bench.duration_s,
                     "--compare-static": bench.compare_static or None}
    if any(v is not None for v in adaptive_only.values()):
        given = ", ".join(k for k, v in adaptive_only.items() if v is not None)
        raise SplitnnError(f"{given} applies to adaptive plans (splitnn partition --adaptive)")


def _is_tile_plan(target: str) -> bool:
    return _strategy(target) == "tiles"


def _strategy(target: str) -> str | None:
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy
    from splitnn.onnxsplit.core.errors import SplitnnError

    try:
        return plan_strategy(target)
    except SplitnnError:
        return None  # the vertical path's reader says what is wrong


def _render(result: SweepReport | SplitBenchReport) -> None:
    """The split's tables, or the sweep's (split_report is loaded already: both benches make its reports)."""
    from splitnn.onnxsplit.bench.split_report import SplitBenchReport

    if isinstance(result, SplitBenchReport):
        render_split(result)
    else:
        render_sweep(result)


def _adaptive_bench(outdir: str, link: LinkChoice, bench: BenchChoice, as_json: bool, plot: str | None) -> None:
    from splitnn.cli.bench_tables import render_adaptive
    from splitnn.cost_models.catalog import load_link
    from splitnn.onnxsplit.artifacts.plan_file import read_adaptive_plan
    from splitnn.onnxsplit.bench.adaptive import AdaptiveBenchOptions, compare_static, run_adaptive_bench
    from splitnn.onnxsplit.runtime.link_emulator import settings_for

    plan = read_adaptive_plan(outdir)
    chosen = load_link(link.name, link.bandwidth_bps, link.rtt_s) if link.name else dataclasses.replace(
        plan.link, uplink_bps=link.bandwidth_bps or plan.link.uplink_bps,
        downlink_bps=link.bandwidth_bps or plan.link.down_bps, rtt_s=plan.link.rtt_s if link.rtt_s is None else link.rtt_s)
    settings = settings_for(chosen.uplink_bps, chosen.rtt_s, downlink_bps=chosen.down_bps, **link.impairments)
    options = AdaptiveBenchOptions(requests=bench.requests, deadline_s=bench.deadline_s, timeout_s=bench.timeout_s,
                                   duration_s=bench.duration_s)
    with Progress() as progress:
        result = (compare_static if bench.compare_static else run_adaptive_bench)(outdir, settings, options, progress)
    if plot is not None:
        from splitnn.onnxsplit.bench.charts import adaptive_timeline_png

        deadline = f", deadline {bench.deadline_s * 1e3:g} ms" if bench.deadline_s is not None else ""
        adaptive_timeline_png(plot, result, f"{outdir}: adaptive over {result.link}{deadline}")
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render_adaptive(result)
    if plot is not None:
        stderr().print(f"plot written to {plot}")


def _tile_bench(outdir: str, tiles: TileBenchChoice, as_json: bool) -> None:
    from splitnn.onnxsplit.bench.tiles import run_tile_bench

    with Progress() as progress:
        progress("starting the Dask cluster", 0, 1)
        result = run_tile_bench(outdir, tiles.options(), progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render_tiles(result)


def _bench(outdir: str, link: LinkChoice, bench: BenchChoice, progress: Progress) -> SplitBenchReport:
    from splitnn.cost_models.catalog import load_link
    from splitnn.onnxsplit.bench.vertical import BenchOptions, run_bench
    from splitnn.onnxsplit.runtime.device import DevicePart
    from splitnn.onnxsplit.runtime.link_emulator import settings_for

    plan = DevicePart(outdir).plan
    if link.name:  # a preset, as in partition; --bandwidth/--rtt override it
        chosen = load_link(link.name, link.bandwidth_bps, link.rtt_s)
    else:  # the link the plan was made for, with what the user overrides (its RTT is kept unless --rtt is given)
        bps = link.bandwidth_bps  # both ways when given
        chosen = dataclasses.replace(plan.link, uplink_bps=plan.link.uplink_bps if bps is None else bps,
                                     downlink_bps=plan.link.downlink_bps if bps is None else bps,
                                     rtt_s=plan.link.rtt_s if link.rtt_s is None else link.rtt_s)
    settings = settings_for(chosen.uplink_bps, chosen.rtt_s, downlink_bps=chosen.down_bps, **link.impairments)
    options = BenchOptions(requests=bench.requests, slowdown=bench.slowdown, timeout_s=bench.timeout_s,
                           baselines=bench.baselines, stream=bench.stream, fps=bench.fps, tls=bench.tls)
    return run_bench(outdir, settings, options, progress)


def _sweep(model: str, sweep: SweepChoice, link: LinkChoice, bench: BenchChoice, progress: Progress) -> SweepReport:
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.bench.sweep import sweep_cuts
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.runtime.link_emulator import settings_for
    from splitnn.onnxsplit.vertical.planning import plan_split

    if link.name is None and link.bandwidth_bps is not None and link.rtt_s is None:
        from splitnn.onnxsplit.core.errors import SplitnnError

        raise SplitnnError("--bandwidth without --link needs --rtt (e.g. --rtt 40ms), or start from a preset: "
                           "--link 4g --bandwidth ...")
    from splitnn.onnxsplit.jobs.choices import planning_inputs

    inputs = planning_inputs(sweep.device, sweep.server, link.name, link.bandwidth_bps, link.rtt_s,
                             sweep.max_device_share, sweep.max_transfer_bytes)
    analysis = analyze(load_graph(model, parse_input_shapes(sweep.input_shapes)))
    plan = plan_split(analysis, inputs.device, inputs.server, inputs.link, sweep.objective, inputs.constraints)
    warn_unpriced(plan.unpriced, progress.bar.console)
    settings = settings_for(inputs.link.uplink_bps, inputs.link.rtt_s, downlink_bps=inputs.link.down_bps,
                            **link.impairments)
    return sweep_cuts(analysis, plan, settings, top=sweep.top, requests=bench.requests, rounds=sweep.rounds,
                      slowdown=bench.slowdown, timeout_s=bench.timeout_s, progress=progress, codec=sweep.codec,
                      reply_codec=sweep.reply_codec)


def _plot(path: str, target: str, result: Any, sweep: bool) -> None:
    from splitnn.onnxsplit.bench.charts import bench_bars, stacked_bars_png, sweep_bars

    if sweep:
        title = f"{Path(target).name}: measured per cut ({result.measure}), {result.device} -> {result.link} -> {result.server}"
        stacked_bars_png(path, sweep_bars(result), title)
    else:
        stacked_bars_png(path, bench_bars(result), f"{target}: cut {', '.join(result.cut.tensors) or '(none)'}, "
                         f"{result.link.description}")

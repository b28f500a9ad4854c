"""`splitnn run-bench`: a plan end to end on this machine (a split over an emulated link, or tiles on Dask)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from splitnn.cli.bench_tables import render_split, render_sweep, render_tiles
from splitnn.cli.options import BENCH, LINK_EMULATION, REPORT, SWEEP, TILE_BENCH, ReportChoice, TileBenchChoice, use_groups
from splitnn.cli.progress import Progress
from splitnn.cli.render import stderr, warn_unpriced

if TYPE_CHECKING:
    from splitnn.onnxsplit.measure.split_report import SplitBenchReport
    from splitnn.onnxsplit.measure.sweep import SweepReport
    from splitnn.onnxsplit.jobs.bench import BenchChoice, LinkEmulation, SweepChoice


@click.command("run-bench")
@click.argument("target", metavar="OUTDIR|MODEL.onnx", type=click.Path())
@use_groups(LINK_EMULATION, BENCH, SWEEP, TILE_BENCH, REPORT)
def run_bench(target: str, link: LinkEmulation, bench: BenchChoice, sweep: SweepChoice | None, tiles: TileBenchChoice,
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
      splitnn run-bench out/pipe --stream --requests 20       (a pipeline plan: a process per stage, its links emulated)
    """
    from splitnn.onnxsplit.core.errors import SplitnnError

    if sweep is not None and bench.stream:
        raise SplitnnError("--sweep measures streams itself with --objective throughput: drop --stream")
    if sweep is None:
        _warn_unpriced(target)
    if sweep is None and _is_tile_plan(target):
        _tile_bench(target, link, bench, tiles, report)
        return
    if tiles.given:
        raise SplitnnError(f"{', '.join(tiles.given)} {'applies' if len(tiles.given) == 1 else 'apply'} only to tile "
                           "plans (splitnn partition --strategy tiles)")
    if sweep is None and _strategy(target) == "pipeline":
        _pipeline_bench(target, link, bench, report)
        return
    if sweep is None and _strategy(target) == "adaptive":
        _adaptive_bench(target, link, bench, report.as_json, report.plot)
        return
    with Progress() as progress:
        result = _measure(target, sweep, link, bench, progress)
    if report.plot is not None:
        _plot(report.plot, target, result, sweep is not None)
    if report.as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        _render(result)
    if report.plot is not None:
        stderr().print(f"plot written to {report.plot}")


def _pipeline_bench(target: str, link: LinkEmulation, bench: BenchChoice, report: ReportChoice) -> None:
    """A pipeline plan's stages, each a process, over its machines' links."""
    from splitnn.cli.pipeline_tables import render_pipeline_bench
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.jobs.bench import bench_pipeline

    if report.plot is not None:
        raise SplitnnError("--plot draws a two-part split's stages; a pipeline plan prints its tables (use --json for "
                           "data)")
    with Progress() as progress:
        progress("starting the stages", 0, 1)
        result = bench_pipeline(target, link, bench, progress)
    if report.as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render_pipeline_bench(result)


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


def _measure(target: str, sweep: SweepChoice | None, link: LinkEmulation, bench: BenchChoice, progress: Progress
             ) -> SweepReport | SplitBenchReport:
    """The sweep of a model's cuts, or the split in a plan folder, measured."""
    from splitnn.onnxsplit.jobs.bench import bench_split, sweep_model

    if sweep is not None:
        return sweep_model(target, sweep, link, bench, progress,
                           lambda plan: warn_unpriced(plan.unpriced, progress.bar.console))
    return bench_split(target, link, bench, progress)


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
    from splitnn.onnxsplit.measure.split_report import SplitBenchReport

    if isinstance(result, SplitBenchReport):
        render_split(result)
    else:
        render_sweep(result)


def _adaptive_bench(outdir: str, link: LinkEmulation, bench: BenchChoice, as_json: bool, plot: str | None) -> None:
    from splitnn.cli.bench_tables import render_adaptive
    from splitnn.onnxsplit.jobs.bench import bench_adaptive

    with Progress() as progress:
        result = bench_adaptive(outdir, link, bench, progress)
    if plot is not None:
        from splitnn.onnxsplit.measure.charts import adaptive_timeline_png

        deadline = f", deadline {bench.deadline_s * 1e3:g} ms" if bench.deadline_s is not None else ""
        adaptive_timeline_png(plot, result, f"{outdir}: adaptive over {result.link}{deadline}")
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render_adaptive(result)
    if plot is not None:
        stderr().print(f"plot written to {plot}")


def _tile_bench(outdir: str, link: LinkEmulation, bench: BenchChoice, tiles: TileBenchChoice, report: ReportChoice
                ) -> None:
    """A tile plan on Dask (the link's and the split's options refused)."""
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.jobs.bench import refuse_on_tiles
    from splitnn.onnxsplit.measure.tiles import run_tile_bench

    if report.plot is not None:
        raise SplitnnError("--plot draws the split's stages; a tile plan prints its scaling table (use --json for data)")
    refuse_on_tiles(link, bench)
    as_json = report.as_json

    with Progress() as progress:
        progress("starting the Dask cluster", 0, 1)
        result = run_tile_bench(outdir, tiles.options(), progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render_tiles(result)


def _plot(path: str, target: str, result: Any, sweep: bool) -> None:
    from splitnn.onnxsplit.measure.charts import bench_bars, stacked_bars_png, sweep_bars

    if sweep:
        title = f"{Path(target).name}: measured per cut ({result.measure}), {result.device} -> {result.link} -> {result.server}"
        stacked_bars_png(path, sweep_bars(result), title)
    else:
        stacked_bars_png(path, bench_bars(result), f"{target}: cut {', '.join(result.cut.tensors) or '(none)'}, "
                         f"{result.link.description}")

"""`splitnn serve`, `splitnn device` and `splitnn run-bench`: the split running over a real socket."""
from __future__ import annotations

import json
from pathlib import Path

import click
from splitnn.cli.options import input_shape_option
from splitnn.cli.render import human_bytes, stderr, stdout


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other machines).")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
def serve(outdir: str, host: str, port: int) -> None:
    """Serve the server part of the plan in OUTDIR until interrupted.

    \b
    Examples:
      splitnn serve out/vgg16 --host 0.0.0.0 --port 9000
      splitnn device out/vgg16 --server 192.168.1.20:9000 --random 10
    """
    from splitnn.onnxsplit.runtime.server import ModelServer, server_part_path

    server = ModelServer(server_part_path(outdir), host=host, port=port)
    stderr().print(f"serving {outdir} on {server.address[0]}:{server.address[1]} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        counts = server.counts
        stderr().print(f"served {counts.ok} requests, {counts.errors} errors, {counts.connections} connections")


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--server", "address", required=True, metavar="HOST:PORT", help="Where `splitnn serve` listens.")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="A .npy file for the (single) model input.")
@click.option("--random", "random_count", type=click.IntRange(1), help="Send N random inputs instead.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each answer.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the last answer's outputs (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Per-request timings as JSON.")
def device(outdir: str, address: str, input_file: str | None, random_count: int | None, timeout: float,
           output: str | None, as_json: bool) -> None:
    """Run the device part of OUTDIR and send its tensors to a server.

    \b
    Examples:
      splitnn device out/vgg16 --server 127.0.0.1:9000 --random 5
      splitnn device out/vgg16 --server 10.0.0.2:9000 --input image.npy -o result.npz
    """
    import numpy as np
    from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.model.sample_inputs import random_feeds
    from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, parse_address

    if (input_file is None) == (random_count is None):
        raise SplitnnError("give exactly one of --input FILE.npy or --random N")
    part = DevicePart(outdir)
    specs = {n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}
    if input_file is not None:
        if len(specs) != 1:
            raise SplitnnError(f"--input gives one tensor but the model has {len(specs)} inputs: use --random")
        try:
            array = np.load(input_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SplitnnError(f"cannot read '{input_file}' as .npy: {exc}") from None
        name, (shape, dtype) = next(iter(specs.items()))
        if list(array.shape) != list(shape):
            raise SplitnnError(f"'{input_file}' has shape {list(array.shape)}, the model's input '{name}' needs {list(shape)}")
        inputs = [{name: array.astype(dtype)}]
    else:
        inputs = [random_feeds(specs, seed) for seed in range(random_count or 0)]
    client = DeviceClient(part, parse_address(address), timeout_s=timeout)
    results = [client.request(feeds) for feeds in inputs]
    client.close()
    last_ok = next((r for r in reversed(results) if r.ok), None)
    if output is not None and last_ok is not None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **last_ok.outputs)
        write_bytes_atomic(Path(output), buffer.getvalue())
    rows = [{"request": r.request_id, "ok": r.ok, "error": r.error, "device_s": r.device_s, "encode_s": r.encode_s,
             "transfer_s": r.transfer_s, "server_s": r.server_s, "e2e_s": r.e2e_s, "bytes_up": r.bytes_up,
             "bytes_down": r.bytes_down} for r in results]
    if as_json:
        click.echo(json.dumps({"requests": rows, "ok": sum(r.ok for r in results),
                               "errors": sum(not r.ok for r in results)}, indent=1))
    else:
        console = stdout()
        for row in rows:
            state = "ok" if row["ok"] else f"[red]{row['error']}[/red]"
            console.print(f"request {row['request']}: device {row['device_s'] * 1e3:.1f} ms, transfer "
                          f"{row['transfer_s'] * 1e3:.1f} ms, server {row['server_s'] * 1e3:.1f} ms, total "
                          f"{row['e2e_s'] * 1e3:.1f} ms, {human_bytes(row['bytes_up'])} up: {state}")
    if not any(r.ok for r in results):
        raise SplitnnError(f"no request succeeded: {results[-1].error}")


@click.command("run-bench")
@click.argument("target", metavar="OUTDIR|MODEL.onnx", type=click.Path())
@click.option("--link", type=click.Choice(["cat1", "3g", "4g", "wifi"]), help="A built-in link (default: the plan's; 4g with --sweep).")
@click.option("--bandwidth", help="Bandwidth each way, e.g. 5.85Mbit (overrides the link's).")
@click.option("--rtt", help="Round trip, e.g. 50ms (overrides the link's).")
@click.option("--jitter", help="Jitter of each one-way delay, e.g. 5ms.")
@click.option("--loss", type=click.FloatRange(0, 1, max_open=True), default=0.0, help="Probability that a packet stalls one RTO (200 ms).")
@click.option("--trace", type=click.Path(dir_okay=False), help="Bandwidth trace, CSV of time_s,mbps.")
@click.option("--outage", "outages", multiple=True, metavar="START-END", help="Link down from START to END seconds, e.g. 2-4.5.")
@click.option("--requests", default=20, show_default=True, type=click.IntRange(1), help="Timed requests (per cut with --sweep).")
@click.option("--device-slowdown", default="auto", show_default=True,
              help="Dilate the device part's compute by K (auto: the device profile against the host profile; 1: none).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each answer.")
@click.option("--no-baselines", is_flag=True, help="Skip the all-device and all-server runs.")
@click.option("--stream", is_flag=True, help="Also pipeline the frames (the device computes frame i+1 while the server works on frame i).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="With --stream: frames offered per second (default: as fast as the device goes).")
@click.option("--sweep", is_flag=True, help="TARGET is a model: measure its feasible cuts and the planner's regret.")
@click.option("--top", type=click.IntRange(1), help="With --sweep: measure only the K best cuts by prediction (and the chosen one).")
@click.option("--rounds", type=click.IntRange(1), help="With --sweep: visit every cut this many times, sharing --requests (default 2).")
@input_shape_option
@click.option("--device", "device_name", help="With --sweep: device profile (default rockpro64).")
@click.option("--server", "server_name", help="With --sweep: server profile (default host: the sweep's server is this machine).")
@click.option("--objective", type=click.Choice(["latency", "throughput"]), help="With --sweep: what to plan and measure (default latency).")
@click.option("--max-device-share", type=click.FloatRange(0, 1), help="With --sweep: as in partition.")
@click.option("--max-transfer-bytes", help="With --sweep: as in partition.")
@click.option("--workers", type=click.IntRange(1), help="Tile plans: Dask workers (default: the plan's --nodes).")
@click.option("--scheduler", metavar="tcp://HOST:8786", help="Tile plans: an existing Dask scheduler (default: an embedded local cluster).")
@click.option("--data-parallel", is_flag=True, help="Tile plans: spread whole images over the workers instead of tiles.")
@click.option("--images", type=click.IntRange(1), default=5, show_default=True, help="Tile plans: timed images per worker count.")
@click.option("--no-scaling", is_flag=True, help="Tile plans: time only the full worker count, not 1..N.")
@click.option("--kill-worker-after", type=click.FloatRange(0), metavar="S",
              help="Tile plans, fault drill: kill one worker S seconds into the first timed image.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="FILE.png", help="Draw stacked bars (device, transfer, server) per cut or per baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def run_bench(target: str, link: str | None, bandwidth: str | None, rtt: str | None, jitter: str | None, loss: float,
              trace: str | None, outages: tuple[str, ...], requests: int, device_slowdown: str, timeout: float,
              no_baselines: bool, stream: bool, fps: float | None, sweep: bool, top: int | None, rounds: int | None,
              input_shapes: tuple[str, ...], device_name: str | None, server_name: str | None, objective: str | None,
              max_device_share: float | None, max_transfer_bytes: str | None, workers: int | None, scheduler: str | None,
              data_parallel: bool, images: int, no_scaling: bool, kill_worker_after: float | None, plot: str | None,
              as_json: bool) -> None:
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
      splitnn run-bench out/tiles                          (a tile plan: tiles on a local Dask cluster)
      splitnn run-bench out/tiles --scheduler tcp://10.0.0.1:8786 --images 20
      splitnn run-bench out/tiles --data-parallel --images 40
    """
    from splitnn.onnxsplit.core.errors import SplitnnError

    sweep_only = {"--top": top, "--rounds": rounds, "--input-shape": input_shapes or None, "--device": device_name,
                  "--server": server_name, "--objective": objective, "--max-device-share": max_device_share,
                  "--max-transfer-bytes": max_transfer_bytes}
    if not sweep and any(v is not None for v in sweep_only.values()):
        given = [k for k, v in sweep_only.items() if v is not None]
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --sweep (a plan in "
                           "OUTDIR has its own): add --sweep and give a model")
    if fps is not None and not stream:
        raise SplitnnError("--fps paces a stream: add --stream")
    if sweep and stream:
        raise SplitnnError("--sweep measures streams itself with --objective throughput: drop --stream")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise SplitnnError(f"--plot '{plot}' must name a .png file")
    if not sweep and _is_tile_plan(target):
        if plot is not None:
            raise SplitnnError("--plot draws the split's stages; a tile plan prints its scaling table (use --json for data)")
        _tile_bench(target, workers, scheduler, data_parallel, images, no_scaling, kill_worker_after, as_json)
        return
    tile_only = {"--workers": workers, "--scheduler": scheduler, "--data-parallel": data_parallel or None,
                 "--no-scaling": no_scaling or None, "--kill-worker-after": kill_worker_after}
    if any(v is not None for v in tile_only.values()):
        given = [k for k, v in tile_only.items() if v is not None]
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to tile plans "
                           "(splitnn partition --strategy tiles)")
    slowdown = _slowdown(device_slowdown)
    extras = dict(jitter_s=_duration(jitter), loss=loss, outages=_outages(outages), trace=_trace(trace))

    with _progress() as progress:
        if sweep:
            report = _sweep(target, input_shapes, device_name, server_name, objective, link, bandwidth, rtt,
                            max_device_share, max_transfer_bytes, extras, top, rounds or 2, requests, slowdown, timeout,
                            progress)
        else:
            report = _bench(target, link, bandwidth, rtt, extras, requests, slowdown, timeout, no_baselines, stream, fps,
                            progress)
    if plot is not None:
        from splitnn.onnxsplit.bench.charts import (
            bench_bars,
            stacked_bars_png,
            sweep_bars,
        )

        if sweep:
            title = (f"{Path(target).name}: measured per cut ({report['measure']}), {report['device']} -> "
                     f"{report['link']} -> {report['server']}")
            stacked_bars_png(plot, sweep_bars(report), title)
        else:
            stacked_bars_png(plot, bench_bars(report), f"{target}: cut {', '.join(report['cut']['tensors']) or '(none)'}, "
                             f"{report['link']['description']}")
    if as_json:
        click.echo(json.dumps(report, indent=1))
    elif sweep:
        _render_sweep(report)
    else:
        _render(report)
    if plot is not None:
        stderr().print(f"plot written to {plot}")


def _is_tile_plan(target: str) -> bool:
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy
    from splitnn.onnxsplit.core.errors import SplitnnError

    try:
        return plan_strategy(target) == "tiles"
    except SplitnnError:
        return False  # the vertical path's reader says what is wrong


def _tile_bench(outdir: str, workers: int | None, scheduler: str | None, data_parallel: bool, images: int,
                no_scaling: bool, kill_worker_after: float | None, as_json: bool) -> None:
    from splitnn.onnxsplit.tiles.dask_runtime import TileBenchOptions, run_tile_bench

    options = TileBenchOptions(workers=workers, scheduler=scheduler, images=images, scaling=not no_scaling,
                               data_parallel=data_parallel, kill_worker_after_s=kill_worker_after)
    with _progress() as progress:
        progress("starting the Dask cluster", 0, 1)
        report = run_tile_bench(outdir, options, progress)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    from rich.table import Table

    console = stdout()
    mode = "whole images spread over the workers" if report["mode"] == "data-parallel" else (
        f"{report['grid']['rows']}x{report['grid']['cols']} tiles")
    console.print(f"{mode} on {report['scheduler']}, {report['images']} images per worker count")
    table = Table(title="Scaling", title_justify="left")
    columns = ["workers", "wall ms", "speedup"] + (["tiles ms", "tiles speedup"] if report["mode"] == "tiles" else ["images/s"])
    for column in columns:
        table.add_column(column, justify="right")
    for row in report["scaling"]:
        cells = [str(row["workers"]), f"{row['wall_s'] * 1e3:.1f}", f"{row['speedup']:.2f}x"]
        cells += ([f"{row['tiles_phase_s'] * 1e3:.1f}", f"{row['tiles_speedup']:.2f}x"] if report["mode"] == "tiles"
                  else [f"{row['images_per_s']:.2f}"])
        table.add_row(*cells)
    console.print(table)
    if report["mode"] == "data-parallel":
        counts = sorted({row["images"] for row in report["table"]})
        workers = sorted({row["workers"] for row in report["table"]})
        grid = Table(title="Seconds by image count (rows) and workers (columns)", title_justify="left")
        for column in ["images", *[str(w) for w in workers]]:
            grid.add_column(column, justify="right")
        wall = {(row["images"], row["workers"]): row["wall_s"] for row in report["table"]}
        for count in counts:
            grid.add_row(str(count), *[f"{wall[(count, w)]:.2f}" for w in workers])
        console.print(grid)
    per_worker: dict[str, list[float]] = {}
    for tile in report["tiles"]:
        per_worker.setdefault(tile["worker"], []).append(tile["seconds"])
    what = "tiles" if report["mode"] == "tiles" else "images"
    console.print("last run: " + "; ".join(f"{worker} ran {len(times)} {what}, {sum(times) * 1e3:.1f} ms of compute"
                                           for worker, times in sorted(per_worker.items())))
    if report["mode"] == "tiles":
        console.print(f"makespan of the tiles {report['makespan_s'] * 1e3:.1f} ms with {report['workers']} workers; "
                      f"redundant MACs {report['redundant_macs_ratio']:.1%}")
        if report["reuse"]["enabled"]:
            console.print(f"reuse: {report['reuse']['saved_macs'] / 1e6:,.0f} M MACs saved "
                          f"({report['reuse']['saved_fraction_of_redundant']:.1%} of the redundant ones)")
        memory = report["memory"]
        if memory["max_growth_bytes"] is not None:
            console.print(f"memory: the plan's sessions grew a worker by up to {human_bytes(memory['max_growth_bytes'])} "
                          f"(planned per node: {human_bytes(memory['planned_node_bytes'])}, stack weights + the largest "
                          f"tile's activations{'; split-layer slices on top' if report['neuron_splits'] else ''}; "
                          f"limit per worker {human_bytes(memory['limit_bytes'])})")
    killed = f"{report['workers_killed']} worker(s) killed by the drill; " if report["workers_killed"] else ""
    console.print(f"{killed}tasks re-run after a lost worker: {report['retries']}")
    if report["outputs_match"] is not None:
        verdict = "match" if report["outputs_match"] else "[red]DIFFER[/red]"
        console.print(f"outputs {verdict} the unpartitioned model (max abs error {report['max_abs_err']:.3g})")


def _duration(text: str | None) -> float:
    from splitnn.onnxsplit.core.units import parse_duration_s

    return parse_duration_s(text) if text else 0.0


def _trace(path: str | None) -> tuple:  # type: ignore[type-arg]
    from splitnn.onnxsplit.runtime.link_emulator import read_trace

    return read_trace(path) if path else ()


def _outages(texts: tuple[str, ...]) -> list[tuple[float, float]]:
    from splitnn.onnxsplit.core.errors import SplitnnError

    windows = []
    for text in texts:
        try:
            start, end = (float(v) for v in text.split("-"))
        except ValueError:
            raise SplitnnError(f"--outage '{text}' must be START-END in seconds, e.g. 2-4.5") from None
        if not 0 <= start < end:
            raise SplitnnError(f"--outage '{text}': START must be below END, both from 0")
        windows.append((start, end))
    return windows


def _slowdown(text: str) -> float | None:
    """None for auto (from the profiles), else the factor K given."""
    from splitnn.onnxsplit.core.errors import SplitnnError

    if text == "auto":
        return None
    try:
        factor = float(text)
    except ValueError:
        raise SplitnnError(f"--device-slowdown '{text}' must be a number K >= 1 or auto") from None
    if factor < 1:
        raise SplitnnError("--device-slowdown must be at least 1 (this host cannot be made faster)")
    return factor


class _progress:
    """A rich progress display on stderr, one bar per stage name; called as progress(stage, done, total)."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # Redrawn only when a step completes, not by a display thread ten times a second: the emulated device
        # and the server share this machine's cores with it.
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=stderr(), transient=True, auto_refresh=False)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, visible=stage.startswith("cuts") or done < total, refresh=True)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]


def _bench(outdir: str, link: str | None, bandwidth: str | None, rtt: str | None, extras: dict, requests: int,  # type: ignore[type-arg]
           slowdown: float | None, timeout: float, no_baselines: bool, stream: bool, fps: float | None,
           progress: _progress) -> dict:  # type: ignore[type-arg]
    from splitnn.cost_models.catalog import load_link
    from splitnn.onnxsplit.bench.vertical import BenchOptions, derive_slowdown
    from splitnn.onnxsplit.bench.vertical import run_bench as bench
    from splitnn.onnxsplit.core.units import parse_bandwidth_bps, parse_duration_s
    from splitnn.onnxsplit.runtime.device import DevicePart
    from splitnn.onnxsplit.runtime.link_emulator import settings_for

    plan = DevicePart(outdir).plan
    if link or bandwidth:  # as in partition: a named link, else a custom one; --bandwidth/--rtt override
        chosen = load_link(link, parse_bandwidth_bps(bandwidth) if bandwidth else None, parse_duration_s(rtt) if rtt else None)
        bandwidth_bps, downlink_bps, rtt_s = chosen.uplink_bps, chosen.down_bps, chosen.rtt_s
    else:  # the link the plan was made for
        bandwidth_bps = plan.link.uplink_bps
        downlink_bps = plan.link.down_bps
        rtt_s = parse_duration_s(rtt) if rtt else plan.link.rtt_s
    settings = settings_for(bandwidth_bps, rtt_s, downlink_bps=downlink_bps, **extras)
    factor, source = (derive_slowdown(outdir, plan), "profiles") if slowdown is None else (slowdown, "given")
    options = BenchOptions(requests=requests, slowdown=factor, slowdown_source=source, timeout_s=timeout,
                           baselines=not no_baselines, stream=stream, fps=fps)
    return bench(outdir, settings, options, progress)


def _sweep(model: str, input_shapes: tuple[str, ...], device: str | None, server: str | None, objective: str | None,
           link: str | None, bandwidth: str | None, rtt: str | None, max_device_share: float | None,
           max_transfer_bytes: str | None, extras: dict, top: int | None, rounds: int, requests: int,  # type: ignore[type-arg]
           slowdown: float | None, timeout: float, progress: _progress) -> dict:  # type: ignore[type-arg]
    from splitnn.cli.options import planning_inputs
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.bench.sweep import sweep_cuts
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.runtime.link_emulator import settings_for
    from splitnn.onnxsplit.vertical.planning import plan_split

    device_profile, server_profile, the_link, constraints = planning_inputs(
        device or "rockpro64", server or "host", link, bandwidth, rtt, max_device_share, max_transfer_bytes)
    analysis = analyze(load_graph(model, parse_input_shapes(input_shapes)))
    plan = plan_split(analysis, device_profile, server_profile, the_link, objective or "latency", constraints)
    settings = settings_for(the_link.uplink_bps, the_link.rtt_s, downlink_bps=the_link.down_bps, **extras)
    return sweep_cuts(analysis, plan, settings, top=top, requests=requests, rounds=rounds, slowdown=slowdown,
                      timeout_s=timeout, progress=progress)


def _render_sweep(report: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    console = stdout()
    console.print(f"{report['model']}: {report['device']} -> {report['link']} -> {report['server']}, objective "
                  f"{report['objective']} (measured: {report['measure']}, {report['requests']} requests per cut in "
                  f"{report['rounds']} rounds over all cuts)")
    table = Table(title=f"{len(report['sweep'])} of {report['feasible_cuts']} feasible cuts measured", title_justify="left")
    for column in ("cut", "after node", "bytes", "predicted ms", "measured ms", "device ms", "transfer ms", "server ms", "K", "ok"):
        table.add_column(column, justify="left" if column == "after node" else "right")
    chosen, best = report["chosen"]["cut_id"], (report["best"] or {}).get("cut_id")
    for point in report["sweep"]:
        mark = ("[bold green]>[/bold green]" if point["cut_id"] == chosen else "") + ("[bold]*[/bold]" if point["cut_id"] == best else "")
        measured = f"{point['measured_s'] * 1e3:.1f}" if point["measured_s"] is not None else "[red]failed[/red]"
        m = point["measured"]
        table.add_row(f"{mark}{point['cut_id']}", point["after_node"] or "(input)", human_bytes(point["bytes"]),
                      f"{point['predicted_s'] * 1e3:.1f}", measured, f"{m['device_s'] * 1e3:.1f}",
                      f"{m['transfer_s'] * 1e3:.1f}", f"{m['server_s'] * 1e3:.1f}", f"{point['slowdown']:.2f}",
                      f"{point['ok']}/{point['ok'] + point['errors']}")
    console.print(table)
    regret = f"{report['regret']:.3f}" if report["regret"] is not None else "unknown (the chosen cut failed)"
    console.print(f"> chosen by prediction: cut {chosen}; * measured best: cut {best}; [bold]regret {regret}[/bold]")


def _render(report: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    console = stdout()
    slow = report["slowdown"]
    console.print(f"{report['requests']} requests over {report['link']['description']}: "
                  f"{report['ok']} ok, {report['errors']} errors")
    if slow["emulated"]:
        console.print(f"[yellow]device compute emulated: host time x {slow['factor']:.2f} ({slow['source']})[/yellow]")
    table = Table(title=f"Cut {', '.join(report['cut']['tensors']) or '(none)'}", title_justify="left")
    for column in ("stage", "p50 ms", "p95 ms", "predicted ms"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    predicted = report["predicted"]
    for stage, label, key in (("device_s", "device compute", "device_s"), ("encode_s", "encode", "encode_s"),
                              ("transfer_s", "transfer", "transfer_s"), ("server_s", "server compute", "server_s"),
                              ("e2e_s", "end to end", "total_s")):
        values = report["stages"][stage]
        table.add_row(label, f"{values['p50'] * 1e3:.2f}", f"{values['p95'] * 1e3:.2f}", f"{predicted[key] * 1e3:.2f}")
    console.print(table)
    console.print(f"physical bound {report['bound_s'] * 1e3:.2f} ms; {human_bytes(report['bytes_per_request']['up'])} up, "
                  f"{human_bytes(report['bytes_per_request']['down'])} down per request")
    base = report["baselines"]
    if base:
        server = f"{base['all_server_s'] * 1e3:.2f} ms" if base["all_server_s"] is not None else "failed"
        console.print(f"baselines: all on the device {base['all_device_s'] * 1e3:.2f} ms, all on the server {server}")
    if report["outputs_match"] is not None:
        verdict = "match" if report["outputs_match"] else "[red]DIFFER[/red]"
        console.print(f"outputs {verdict} the unsplit model (max abs error {report['max_abs_err']:.3g})")
    for message in report["error_messages"]:
        console.print(f"[red]error:[/red] {message}")
    stream = report["stream"]
    if stream is not None:
        periods = ", ".join(f"{k[:-2]} {v * 1e3:.1f} ms" for k, v in stream["stage_periods_s"].items())
        offered = f" (offered {stream['offered_fps']:g} fps)" if stream["offered_fps"] else ""
        ratio = f" = {stream['ratio']:.2f} x" if stream["ratio"] is not None else ""
        console.print(f"stream of {stream['frames']} frames{offered}: {stream['ok']} ok, {stream['errors']} errors; "
                      f"[bold]{stream['throughput_fps']:.2f} frames/s[/bold]{ratio} the bound {stream['bound_fps']:.2f} "
                      f"(1 / max stage: {periods}; bottleneck {stream['bottleneck'][:-2]}); latency p50 "
                      f"{stream['latency_s']['p50'] * 1e3:.1f} ms, p95 {stream['latency_s']['p95'] * 1e3:.1f} ms")
        for message in stream["error_messages"]:
            console.print(f"[red]stream error:[/red] {message}")

"""`splitnn serve`, `splitnn device` and `splitnn run-bench`: the split running over a real socket."""
from __future__ import annotations

import json
from pathlib import Path

import click

from cli.render import human_bytes, stderr, stdout


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
    from onnxsplit.serving import ModelServer, server_part_path

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

    from onnxsplit.device_runtime import DeviceClient, DevicePart, parse_address
    from onnxsplit.errors import SplitnnError
    from onnxsplit.files import write_bytes_atomic
    from onnxsplit.sample_inputs import random_feeds

    if (input_file is None) == (random_count is None):
        raise SplitnnError("give exactly one of --input FILE.npy or --random N")
    part = DevicePart(outdir)
    specs = {n: (s["shape"], s["dtype"]) for n, s in part.plan["inputs"].items()}
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
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--link", type=click.Choice(["cat1", "3g", "4g", "wifi"]), help="A built-in link (default: the plan's).")
@click.option("--bandwidth", help="Bandwidth each way, e.g. 5.85Mbit (overrides the link's).")
@click.option("--rtt", help="Round trip, e.g. 50ms (overrides the link's).")
@click.option("--jitter", help="Jitter of each one-way delay, e.g. 5ms.")
@click.option("--loss", type=click.FloatRange(0, 1, max_open=True), default=0.0, help="Probability that a packet stalls one RTO (200 ms).")
@click.option("--trace", type=click.Path(dir_okay=False), help="Bandwidth trace, CSV of time_s,mbps.")
@click.option("--outage", "outages", multiple=True, metavar="START-END", help="Link down from START to END seconds, e.g. 2-4.5.")
@click.option("--requests", default=20, show_default=True, type=click.IntRange(1), help="Timed requests.")
@click.option("--device-slowdown", default="auto", show_default=True,
              help="Dilate the device part's compute by K (auto: the device profile against the host profile; 1: none).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each answer.")
@click.option("--no-baselines", is_flag=True, help="Skip the all-device and all-server runs.")
@click.option("--stream", is_flag=True, help="Also pipeline the frames (the device computes frame i+1 while the server works on frame i).")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="With --stream: frames offered per second (default: as fast as the device goes).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def run_bench(outdir: str, link: str | None, bandwidth: str | None, rtt: str | None, jitter: str | None, loss: float,
              trace: str | None, outages: tuple[str, ...], requests: int, device_slowdown: str, timeout: float,
              no_baselines: bool, stream: bool, fps: float | None, as_json: bool) -> None:
    """Run the plan in OUTDIR end to end over an emulated link and compare with the prediction.

    Starts the server part in a second process, a user-space link relay
    (bandwidth, delay, jitter, loss stalls, outages, traces; no root needed)
    and the device loop; reports p50/p95 per stage, the plan's prediction, the
    physical bound and the all-device / all-server baselines.

    \b
    Examples:
      splitnn run-bench out/vgg16
      splitnn run-bench out/vgg16 --link 3g --requests 50 --json
      splitnn run-bench out/vgg16 --bandwidth 20Mbit --rtt 30ms --jitter 5ms --loss 0.01
      splitnn run-bench out/vgg16 --trace lte.csv --outage 3-5
      splitnn run-bench out/vgg16 --stream --requests 50 [--fps 10]
    """
    from cost_models.profiles import load_link
    from onnxsplit.bench import BenchOptions, derive_slowdown
    from onnxsplit.bench import run_bench as bench
    from onnxsplit.device_runtime import DevicePart
    from onnxsplit.errors import SplitnnError
    from onnxsplit.link_emulator import read_trace, settings_for
    from onnxsplit.units import parse_bandwidth_bps, parse_duration_s

    if fps is not None and not stream:
        raise SplitnnError("--fps paces a stream: add --stream")
    plan = DevicePart(outdir).plan
    if link or bandwidth:  # as in partition: a named link, else a custom one; --bandwidth/--rtt override
        chosen = load_link(link, parse_bandwidth_bps(bandwidth) if bandwidth else None, parse_duration_s(rtt) if rtt else None)
        bandwidth_bps, downlink_bps, rtt_s = chosen.uplink_bps, chosen.down_bps, chosen.rtt_s
    else:  # the link the plan was made for
        bandwidth_bps = plan["link"]["uplink_bps"]
        downlink_bps = plan["link"].get("downlink_bps", bandwidth_bps)
        rtt_s = parse_duration_s(rtt) if rtt else plan["link"]["rtt_s"]
    windows = []
    for text in outages:
        try:
            start, end = (float(v) for v in text.split("-"))
        except ValueError:
            raise SplitnnError(f"--outage '{text}' must be START-END in seconds, e.g. 2-4.5") from None
        if not 0 <= start < end:
            raise SplitnnError(f"--outage '{text}': START must be below END, both from 0")
        windows.append((start, end))
    settings = settings_for(bandwidth_bps, rtt_s, downlink_bps=downlink_bps, jitter_s=parse_duration_s(jitter) if jitter else 0.0, loss=loss,
                            outages=windows, trace=read_trace(trace) if trace else ())
    if device_slowdown == "auto":
        factor, source = derive_slowdown(plan), "profiles"
    else:
        try:
            factor, source = float(device_slowdown), "given"
        except ValueError:
            raise SplitnnError(f"--device-slowdown '{device_slowdown}' must be a number K >= 1 or auto") from None
        if factor < 1:
            raise SplitnnError("--device-slowdown must be at least 1 (this host cannot be made faster)")
    options = BenchOptions(requests=requests, slowdown=factor, slowdown_source=source, timeout_s=timeout,
                           baselines=not no_baselines, stream=stream, fps=fps)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        report = bench(outdir, settings, options, progress)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    _render(report)


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

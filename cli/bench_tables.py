"""The tables run-bench prints: a split's stages, a sweep of cuts, a tile plan's scaling."""
from __future__ import annotations

from typing import TYPE_CHECKING

from splitnn.cli.render import human_bytes, stdout

if TYPE_CHECKING:
    from splitnn.cost_models.prediction import Prediction
    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport, HeldBackCount
    from splitnn.onnxsplit.measure.run_prediction import RunPrediction
    from splitnn.onnxsplit.measure.split_report import SplitBenchReport, StreamReport, Versus
    from splitnn.onnxsplit.measure.sweep import SweepReport
    from splitnn.onnxsplit.measure.tile_report import TableRow, TileBenchReport


def render_split(report: SplitBenchReport) -> None:
    from rich.table import Table

    console = stdout()
    console.print(f"{report.requests} requests over {report.link.description}: {report.ok} ok, {report.errors} errors")
    _render_emulation(report)
    _render_predictions(report)
    table = Table(title=f"Cut {', '.join(report.cut.tensors) or '(none)'}", title_justify="left")
    run = report.this_run.predicted if report.this_run is not None else None
    for column in ("stage", "p50 ms", "p95 ms", *(("this run predicted ms",) if run else ()), "plan predicted ms"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, label, key in (("device_s", "device compute", "device_s"), ("encode_s", "encode", "encode_s"),
                              ("transfer_s", "transfer", "transfer_s"), ("server_s", "server compute", "server_s"),
                              ("decode_s", "decode", "decode_s"), ("e2e_s", "end to end", "total_s")):
        values = report.stages[stage]
        table.add_row(label, f"{values.p50 * 1e3:.2f}", f"{values.p95 * 1e3:.2f}",
                      *((f"{getattr(run, key) * 1e3:.2f}",) if run else ()), f"{getattr(report.predicted, key) * 1e3:.2f}")
    console.print(table)
    console.print(f"physical bound {report.bound_s * 1e3:.2f} ms; {human_bytes(report.bytes_per_request.up)} up, "
                  f"{human_bytes(report.bytes_per_request.down)} down per request"
                  + (f" (the answers in {report.reply_codec})" if report.reply_codec else ""))
    base = report.baselines
    if base is not None:
        server = f"{base.all_server_s * 1e3:.2f} ms" if base.all_server_s is not None else "failed"
        device_predicted = _predicted_ms(base.predicted_all_device)
        server_predicted = _predicted_ms(base.predicted_all_server)
        run_server = report.this_run.all_server if report.this_run is not None else None
        if run_server is not None and base.predicted_all_server is not None:
            server_predicted = (f" (predicted {run_server.total_s * 1e3:.2f} for this run, "
                                f"{base.predicted_all_server.total_s * 1e3:.2f} by the plan)")
        console.print(f"baselines: all on the device {base.all_device_s * 1e3:.2f} ms{device_predicted}, "
                      f"all on the server {server}{server_predicted}")
    if report.outputs_match is not None:
        verdict = "match" if report.outputs_match else "[red]DIFFER[/red]"
        named = [f"{what} {name}" for what, name in (("the codec", report.codec),
                                                      ("the reply codec", report.reply_codec)) if name]
        verb = "were" if len(named) > 1 else "was"
        codec = f", within what {' and '.join(named)} {verb} measured to change at partition" if named else ""
        top1 = {True: "; the same top class", False: "; [red]another top class[/red]", None: ""}[report.same_top1]
        if report.tls:
            top1 += "; over TLS"
        console.print(f"outputs {verdict} the unsplit model (max abs error {report.max_abs_err:.3g}{codec}){top1}")
    for message in report.error_messages:
        console.print(f"[red]error:[/red] {message}")
    if report.stream is not None:
        _render_stream(report.stream, report.this_run)
    _render_versus(report.versus_baselines, _baseline_of(report))


def _render_predictions(report: SplitBenchReport) -> None:
    """Which machines and link each prediction is for: the plan's, and this run's (the board as emulated, the link
    as the relay emulates it, the server this host)."""
    run = report.this_run
    line = f"predicted: by the plan for {report.planned_for}"
    if run is not None:
        link = run.link if "link" in run.differs else "the plan's link"
        line += f"; for this run, {run.device} emulated -> {link} -> {run.server}"
    stdout().print(line)


def _predicted_ms(prediction: Prediction | None) -> str:
    return f" (predicted {prediction.total_s * 1e3:.2f})" if prediction is not None else ""


def _render_emulation(report: SplitBenchReport) -> None:
    """One line on how the board's compute was emulated: a factor given, or each part brought to its prediction."""
    slow, console = report.slowdown, stdout()
    if slow.source == "given":
        if slow.emulated:
            console.print(f"[yellow]device compute emulated: host time x {slow.factor:.2f} (--device-slowdown)[/yellow]")
        return
    parts = [(what, c) for what, c in (("device part", slow.device_part), ("whole model", slow.whole_model)) if c]
    described = "; ".join(f"{what} {c.host_s * 1e3:.2f} ms here, {c.predicted_s * 1e3:.2f} ms predicted"
                          + (" [red](this host is slower: run at its own speed)[/red]" if c.host_slower else "")
                          for what, c in parts)
    console.print(f"[yellow]device compute emulated: each run waits until the device profile's prediction has "
                  f"passed ({described})[/yellow]")
    if slow.encode_board_s:
        console.print(f"[yellow]encoding emulated: each request's encoding waits until {slow.encode_board_s * 1e3:.2f} ms "
                      "have passed, the codec's time on the board as partition priced it (its time on the machine that "
                      "planned, scaled as partition's codec line says: by the two profiles' codec reference times, or "
                      "by their DRAM bandwidths where a profile has none)[/yellow]")


def _render_stream(stream: StreamReport, run: RunPrediction | None = None) -> None:
    console = stdout()
    periods = ", ".join(f"{k[:-2]} {v * 1e3:.1f} ms" for k, v in stream.stage_periods_s.items())
    offered = f" (offered {stream.offered_fps:g} fps)" if stream.offered_fps else ""
    ratio = f" = {stream.ratio:.2f} x" if stream.ratio is not None else ""
    predicted = f" (predicted {stream.predicted_fps:.2f})" if stream.predicted_fps is not None else ""
    if run is not None and stream.predicted_fps is not None:
        shared = (f", bound by this host's cores, which compute the device part's real work and the server part's: "
                  f"{run.shared_cores_s * 1e3:.1f} ms a frame" if run.shared_cores_s
                  and 1 / run.shared_cores_s <= run.predicted.throughput_fps * 1.0001 else "")
        predicted = (f" (predicted {run.predicted.throughput_fps:.2f} for this run{shared}; "
                     f"{stream.predicted_fps:.2f} by the plan)")
    console.print(f"stream of {stream.frames} frames{offered}: {stream.ok} ok, {stream.errors} errors; "
                  f"[bold]{stream.throughput_fps:.2f} frames/s[/bold]{predicted}{ratio} the bound {stream.bound_fps:.2f} "
                  f"(1 / max stage: {periods}; bottleneck {stream.bottleneck[:-2]}); latency p50 "
                  f"{stream.latency_s.p50 * 1e3:.1f} ms, p95 {stream.latency_s.p95 * 1e3:.1f} ms")
    for message in stream.error_messages:
        console.print(f"[red]stream error:[/red] {message}")


def _baseline_of(report: SplitBenchReport) -> str | None:
    """The baseline the split itself is, if any: "device" (its cut sends nothing) or "server" (it sends the input,
    cut 0)."""
    return "device" if not report.cut.tensors else "server" if report.cut.id == 0 else None


def _render_versus(versus: Versus | None, same: str | None = None) -> None:
    """How the split did against each baseline; against the one it is (`same`: "device" or "server"), it is no
    gain or loss, whatever the two runs' noise says."""
    if versus is None:
        return
    if versus.measure == "frames per second":
        values = f"{versus.split:.2f} frames/s against {versus.all_device:.2f} all on the device"
        values += f" and {versus.all_server:.2f} all on the server" if versus.all_server is not None else ""
    else:
        values = f"{versus.split * 1e3:.1f} ms against {versus.all_device * 1e3:.1f} ms all on the device"
        values += f" and {versus.all_server * 1e3:.1f} ms all on the server" if versus.all_server is not None else ""
    def factor(x: float | None, where: str) -> str:
        if where == same:
            between = f"; {x:.2f}x between the two runs" if x is not None else ""
            return f"the same (the split is all on the {where}{between})"
        if x is None:
            return "unknown (it failed)"
        shown = f"{x:.2f}"  # the word follows the figure shown: 0.998 is 1.00x, even
        return f"{shown}x ({'better' if float(shown) > 1 else 'worse' if float(shown) < 1 else 'even'})"

    stdout().print(f"[bold]the split against all on the device: {factor(versus.vs_all_device, 'device')}; against "
                   f"all on the server: {factor(versus.vs_all_server, 'server')}[/bold] ({versus.measure}, measured "
                   f"in this run: {values})")


def render_sweep(report: SweepReport) -> None:
    from rich.table import Table

    console = stdout()
    codec = f", every cut's tensors in {report.codec}" if report.codec != "none" else ""
    codec += f", every answer in {report.reply_codec}" if report.reply_codec != "none" else ""
    console.print(f"{report.model}: {report.device} -> {report.link} -> {report.server}, objective "
                  f"{report.objective} (measured: {report.measure}, {report.requests} requests per cut in "
                  f"{report.rounds} rounds over all cuts{codec})")
    table = Table(title=f"{len(report.sweep)} of {report.feasible_cuts} feasible cuts measured", title_justify="left")
    for column in ("cut", "after node", "bytes", "predicted ms", "measured ms", "device ms", "transfer ms", "server ms", "K", "ok"):
        table.add_column(column, justify="left" if column == "after node" else "right")
    chosen, best = report.chosen.cut_id, report.best.cut_id if report.best else None
    for point in report.sweep:
        mark = ("[bold green]>[/bold green]" if point.cut_id == chosen else "") + ("[bold]*[/bold]" if point.cut_id == best else "")
        measured = f"{point.measured_s * 1e3:.1f}" if point.measured_s is not None else "[red]failed[/red]"
        m = point.measured
        table.add_row(f"{mark}{point.cut_id}", point.after_node or "(input)", human_bytes(point.bytes),
                      f"{point.predicted_s * 1e3:.1f}", measured, f"{m.device_s * 1e3:.1f}",
                      f"{m.transfer_s * 1e3:.1f}", f"{m.server_s * 1e3:.1f}", f"{point.slowdown:.2f}",
                      f"{point.ok}/{point.ok + point.errors}")
    console.print(table)
    regret = f"{report.regret:.3f}" if report.regret is not None else "unknown (the chosen cut failed)"
    console.print(f"> chosen by prediction: cut {chosen}; * measured best: cut {best}; [bold]regret {regret}[/bold]")


def render_tiles(report: TileBenchReport) -> None:
    from rich.table import Table

    console = stdout()
    tiles_mode = report.mode == "tiles"
    mode = f"{report.grid.rows}x{report.grid.cols} tiles" if tiles_mode and report.grid else "whole images spread over the workers"
    console.print(f"{mode} on {report.scheduler}, {report.images} images per worker count")
    if report.emulated_nodes:
        console.print(f"nodes emulated as {report.emulated_nodes}: each tile held to its predicted time on its worker, "
                      "the client's steps to theirs; the link between them is this host's")
    table = Table(title="Scaling", title_justify="left")
    for column in ["workers", "wall ms", "speedup"] + (["tiles ms", "tiles speedup", "client CPU ms"] if tiles_mode
                                                       else ["images/s"]):
        table.add_column(column, justify="right")
    for row in report.scaling:
        cells = [str(row.workers), f"{row.wall_s * 1e3:.1f}", f"{row.speedup:.2f}x"]
        cells += ([f"{(row.tiles_phase_s or 0) * 1e3:.1f}", f"{row.tiles_speedup or 0:.2f}x",
                   f"{(row.client_cpu_s or 0) * 1e3:.1f}"] if tiles_mode else [f"{row.images_per_s or 0:.2f}"])
        table.add_row(*cells)
    console.print(table)
    if report.table:
        _render_image_table(report.table)
    per_worker: dict[str, list[float]] = {}
    for task in report.tiles:
        per_worker.setdefault(task.worker, []).append(task.seconds)
    what = "tiles" if tiles_mode else "images"
    console.print("last run: " + "; ".join(f"{worker} ran {len(times)} {what}, {sum(times) * 1e3:.1f} ms of compute"
                                           for worker, times in sorted(per_worker.items())))
    if tiles_mode:
        _render_phases(report)
        _render_tile_figures(report)
        _render_tile_prediction(report)
    killed = f"{report.workers_killed} worker(s) killed by the drill; " if report.workers_killed else ""
    console.print(f"{killed}tasks re-run after a lost worker: {report.retries}")
    if report.outputs_match is not None:
        verdict = "match" if report.outputs_match else "[red]DIFFER[/red]"
        console.print(f"outputs {verdict} the unpartitioned model (max abs error {report.max_abs_err:.3g})")


def _render_tile_prediction(report: TileBenchReport) -> None:
    """The plan's prediction for its nodes beside what the run measured on as many workers."""
    predicted, top = report.predicted, report.scaling[-1]
    if predicted is None or top.tiles_phase_s is None or top.workers != report.plan_nodes:
        return
    where = (f"held to {report.emulated_nodes}'s times" if report.emulated_nodes
             else "this host's cores (--emulate-nodes holds them to the plan's node profile)")
    link = (f" (tiles' bytes at {predicted.cluster_link_bps / 1e6:,.0f} Mbit/s)" if predicted.cluster_link_bps
            else "")
    line = (f"predicted by the plan for {top.workers} nodes: tiles {predicted.tiles_phase_s * 1e3:.1f} ms, image "
            f"{predicted.makespan_s * 1e3:.1f} ms{link}; "
            f"measured on {top.workers} workers, {where}: tiles {top.tiles_phase_s * 1e3:.1f} ms "
            f"({top.tiles_phase_s / predicted.tiles_phase_s - 1:+.0%}), image {top.wall_s * 1e3:.1f} ms "
            f"({top.wall_s / predicted.makespan_s - 1:+.0%})")
    stdout().print(line)
    stdout().print(f"the model untiled on one node: {predicted.single_node_s * 1e3:.1f} ms predicted, "
                   f"{predicted.single_node_s / predicted.makespan_s:.2f}x the plan's image on {top.workers} nodes")
    if report.host_slower_tiles:
        stdout().print(f"this host ran {report.host_slower_tiles} tile(s) slower than {report.emulated_nodes} is "
                       "predicted to: those took the host's own time")


def _render_image_table(rows: tuple[TableRow, ...]) -> None:
    from rich.table import Table

    counts = sorted({row.images for row in rows})
    workers = sorted({row.workers for row in rows})
    grid = Table(title="Seconds by image count (rows) and workers (columns)", title_justify="left")
    for column in ["images", *[str(w) for w in workers]]:
        grid.add_column(column, justify="right")
    wall = {(row.images, row.workers): row.wall_s for row in rows}
    for count in counts:
        grid.add_row(str(count), *[f"{wall[(count, w)]:.2f}" for w in workers])
    stdout().print(grid)


def _render_phases(report: TileBenchReport) -> None:
    """Per phase of an image (each stack's tiles, what runs on the client after them, the whole image): the
    median time on each worker count and the speedup of the most workers over one."""
    from rich.table import Table

    rows = report.scaling
    if not rows or rows[0].stack_phases_s is None:
        return
    table = Table(title="Per phase (median ms per image)", title_justify="left")
    for column in ["phase", *[f"{row.workers} worker{'s' if row.workers > 1 else ''}" for row in rows], "speedup"]:
        table.add_column(column, justify="right" if column != "phase" else "left")
    labels = report.stack_labels or tuple(f"stack {k + 1}" for k in range(len(rows[0].stack_phases_s)))
    # A tile run's rows all have their phases (checked on the first above) and split layers.
    phases, speedups = [row.stack_phases_s or () for row in rows], rows[-1].stack_speedups or ()
    for k, label in enumerate(labels):
        table.add_row(f"tiles: {label}", *[f"{row[k] * 1e3:.1f}" for row in phases], f"{speedups[k]:.2f}x")
    splits = report.neuron_splits or ()
    layers, layer_speedups = [row.split_layers_s or () for row in rows], rows[-1].split_layer_speedups or ()
    for k, split in enumerate(splits):
        table.add_row(f"{split.node} in {len(split.slices)} slices across the nodes",
                      *[f"{row[k] * 1e3:.1f}" for row in layers], f"{layer_speedups[k]:.2f}x")
    client = [(row.remainder_s or 0) - sum(row.split_layers_s or ()) for row in rows]
    table.add_row("the rest, on the client" if splits else "on the client after the tiles",
                  *[f"{c * 1e3:.1f}" for c in client], f"{client[0] / client[-1]:.2f}x" if client[-1] > 0 else "-")
    table.add_row("whole image", *[f"{row.wall_s * 1e3:.1f}" for row in rows], f"{rows[-1].speedup:.2f}x")
    stdout().print(table)


def _render_tile_figures(report: TileBenchReport) -> None:
    console = stdout()
    console.print(f"makespan of the tiles {report.makespan_s * 1e3:.1f} ms with {report.workers} workers; "
                  f"redundant MACs {report.redundant_macs_ratio or 0:.1%}")
    reuse = report.reuse or {}
    if reuse.get("enabled"):
        console.print(f"reuse: {reuse['saved_macs'] / 1e6:,.0f} M MACs saved "
                      f"({reuse['saved_fraction_of_redundant']:.1%} of the redundant ones)")
    memory = report.memory
    if memory is not None and memory.max_growth_bytes is not None:
        console.print(f"memory: the plan's sessions grew a worker by up to {human_bytes(memory.max_growth_bytes)} "
                      f"(planned per node: {human_bytes(memory.planned_node_bytes)}, stack weights + the largest "
                      f"tile's activations{'; split-layer slices on top' if report.neuron_splits else ''}; "
                      f"limit per worker {human_bytes(memory.limit_bytes)})")


def render_adaptive(report: AdaptiveBenchReport) -> None:
    """An adaptive plan's run: answers by where they came from, latency percentiles, the cuts used."""
    console = stdout()
    deadline = f", deadline {report.deadline_s * 1e3:g} ms ({report.deadline_missed} missed)" if report.deadline_s else ""
    console.print(f"{report.requests} requests over {report.link}{deadline}: [bold]{report.answered_remote} answered "
                  f"through the server, {report.answered_local} by the device alone[/bold], {report.errors} errors")
    e = report.e2e_s
    console.print(f"end to end: p50 {e.p50 * 1e3:.1f} ms, p95 {e.p95 * 1e3:.1f} ms, p99 {e.p99 * 1e3:.1f} ms, "
                  f"mean {e.mean * 1e3:.1f} ms")
    cuts = ", ".join(f"cut {cut}: {count}" for cut, count in report.requests_per_cut.items())
    console.print(f"requests per cut: {cuts}; {report.switches} switches; {report.probes} bandwidth probes")
    for held in report.held_back:
        console.print(_held_back_line(held, report.deadline_s))
    known = [(p.estimate_bps, p.true_bps, p.estimate_spread) for p in report.points if p.estimate_bps and p.true_bps]
    if known:
        import statistics

        errors = [abs(estimate_bps / true_bps - 1) for estimate_bps, true_bps, _ in known]
        last_bps, last_true_bps, last_spread = known[-1]
        console.print(f"bandwidth estimate against the link's rate: median |error| {statistics.median(errors):.0%} "
                      f"over {len(known)} requests; at the end {last_bps / 1e6:.3g} Mbit/s "
                      f"(spread x{last_spread or 1:.2f}) for {last_true_bps / 1e6:.3g}")
    if report.outputs_match is not None:
        verdict = "match" if report.outputs_match else "[red]DIFFER[/red]"
        console.print(f"outputs {verdict} the unsplit model (max abs error {report.max_abs_err:.3g})")
    if report.static:
        _render_static(report)


def _held_back_line(held: HeldBackCount, deadline_s: float | None) -> str:
    """Why some requests sent nothing at the cut the estimate chose, and were answered by the board alone."""
    what = (f"{held.requests} request{'s' if held.requests > 1 else ''} answered by the device alone where the "
            f"estimate chose cut {held.cut_id}: ")
    needed = f"the {held.needed_s * 1e3:.1f} ms predicted for the link and the server (medians)"
    if held.reason == "deadline" and deadline_s is not None:
        left = f"{held.budget_s * 1e3:.1f} ms" if held.budget_s > 0 else "no time"
        return (f"[yellow]{what}the deadline ({deadline_s * 1e3:g} ms) leaves the link and the server {left} there "
                f"(after the device part, keeping the time to finish alone), under {needed}: too little time for "
                "the server; a longer deadline lets the device try it[/yellow]")
    if held.reason == "slower":
        return f"[yellow]{what}the board alone was predicted to answer sooner than through the server ({needed})[/yellow]"
    return f"[yellow]{what}{needed} exceeds the timeout ({held.budget_s * 1e3:.1f} ms left)[/yellow]"


def _render_static(report: AdaptiveBenchReport) -> None:
    from rich.table import Table

    table = Table(title="The same replay, adaptive and with each kept cut held", title_justify="left")
    for column in ("run", "requests", "remote", "local", "errors", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in (report, *report.static):
        e = run.e2e_s
        table.add_row("adaptive" if run.held_cut is None else f"cut {run.held_cut} held", str(run.requests),
                      str(run.answered_remote), str(run.answered_local), str(run.errors), f"{e.p50 * 1e3:.1f}",
                      f"{e.p95 * 1e3:.1f}", f"{e.p99 * 1e3:.1f}", f"{e.mean * 1e3:.1f}")
    stdout().print(table)

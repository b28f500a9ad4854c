"""`splitnn partition`: choose a cut, write the device and server parts, verify them."""
from __future__ import annotations

import json

import click
from splitnn.cli.options import input_shape_option, planning_inputs
from splitnn.cli.render import human_bytes, stderr, stdout


@click.command()
@click.argument("model", metavar="MODEL.onnx")
@input_shape_option
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Folder to write the plan and parts to.")
@click.option("--device", default="rockpro64", show_default=True, help="Device profile: rockpro64, raspberry-pi-4, cloud-cpu, host, or a .toml file.")
@click.option("--server", default="cloud-cpu", show_default=True, help="Server profile (same choices as --device).")
@click.option("--link", type=click.Choice(["cat1", "3g", "4g", "wifi"]), help="A built-in uplink (default 4g unless --bandwidth is given).")
@click.option("--bandwidth", help="Uplink bandwidth, e.g. 5.85Mbit (overrides the link's).")
@click.option("--rtt", help="Round-trip time, e.g. 40ms (overrides the link's).")
@click.option("--objective", type=click.Choice(["latency", "throughput", "energy"]), default="latency", show_default=True)
@click.option("--cut", "cut_tensors", metavar="TENSOR[,TENSOR...]", help="Take the cut that sends exactly these tensors instead of choosing.")
@click.option("--max-device-share", type=click.FloatRange(0, 1), help="Largest fraction of the model's MACs allowed on the device.")
@click.option("--max-transfer-bytes", help="Largest transfer allowed, e.g. 200kB.")
@click.option("--no-ort", is_flag=True, help="Skip the ORT-format (mobile) copy of the device part.")
@click.option("--atol", default=1e-4, show_default=True, help="Verification: absolute tolerance.")
@click.option("--rtol", default=1e-3, show_default=True, help="Verification: relative tolerance.")
@click.option("--strategy", type=click.Choice(["vertical", "tiles"]), default="vertical", show_default=True,
              help="vertical: device + server; tiles: the first layers split into tiles across a cluster.")
@click.option("--nodes", type=click.IntRange(1), default=2, show_default=True, help="Tiles: how many nodes run the tiles.")
@click.option("--grid", default="auto", show_default=True, metavar="RxC|auto", help="Tiles: the grid, e.g. 3x3 (auto: best predicted).")
@click.option("--fuse-until", default="auto", show_default=True, metavar="TENSOR|auto", help="Tiles: the last tensor of the fused stack.")
@click.option("--node-profile", default="rockpro64", show_default=True, help="Tiles: the profile of every node.")
@click.option("--reuse", is_flag=True, help="Tiles: compute each overlap once (checkerboard reuse) instead of in both tiles.")
@click.option("--json", "as_json", is_flag=True, help="Print plan.json to stdout instead of tables.")
def partition(model: str, input_shapes: tuple[str, ...], outdir: str, device: str, server: str, link: str | None,
              bandwidth: str | None, rtt: str | None, objective: str, cut_tensors: str | None, max_device_share: float | None,
              max_transfer_bytes: str | None, no_ort: bool, atol: float, rtol: float, strategy: str, nodes: int, grid: str,
              fuse_until: str, node_profile: str, reuse: bool, as_json: bool) -> None:
    """Split MODEL between a device and a server at the best cut, and write both parts.

    Every cut is predicted (device roofline + transfer + server roofline), cuts
    that break a constraint are ruled out, and the best by --objective is
    written to OUTDIR: plan.json, device/ and server/ (model.onnx with its
    weights in weights.bin, plus device/model.ort). The chained parts are then
    checked against the model on a random input.

    \b
    Examples:
      splitnn partition vgg16.onnx -o out/vgg16 --link 3g
      splitnn partition resnet18.onnx -o out/r18 --device raspberry-pi-4 --bandwidth 20Mbit --rtt 15ms
      splitnn partition model.onnx -o out/m --cut relu5_out --no-ort --json
      splitnn partition vgg16.onnx -o out/tiles --strategy tiles --nodes 4 --grid 3x3 --fuse-until maxpool3_out
      splitnn partition vgg16.onnx -o out/tiles --strategy tiles --nodes 4 --grid 3x3 --reuse
    """
    if strategy == "tiles":
        _partition_tiles(model, input_shapes, outdir, nodes, grid, fuse_until, node_profile, reuse, atol, rtol, as_json)
        return
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.vertical.export import write_split
    from splitnn.onnxsplit.vertical.planning import plan_split

    device_profile, server_profile, the_link, constraints = planning_inputs(
        device, server, link, bandwidth, rtt, max_device_share, max_transfer_bytes)
    forced = tuple(t.strip() for t in cut_tensors.split(",") if t.strip()) if cut_tensors is not None else None

    analysis = analyze(load_graph(model, parse_input_shapes(input_shapes)))
    plan = plan_split(analysis, device_profile, server_profile, the_link, objective, constraints, forced)
    with stderr().status("writing and verifying the parts..."):
        document = write_split(analysis, plan, outdir, ort_format=not no_ort, atol=atol, rtol=rtol)
    if as_json:
        click.echo(json.dumps(document.to_dict(), indent=1))
        return
    _render(document, plan)


def _partition_tiles(model: str, input_shapes: tuple[str, ...], outdir: str, nodes: int, grid: str, fuse_until: str,
                     node_profile: str, reuse: bool, atol: float, rtol: float, as_json: bool) -> None:
    from splitnn.cost_models.catalog import load_device
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.tiles.export import write_tiles
    from splitnn.onnxsplit.tiles.planning import plan_tiles

    shape = None
    if grid != "auto":
        rows, _, cols = grid.lower().partition("x")
        if not (rows.isdigit() and cols.isdigit() and int(rows) > 0 and int(cols) > 0):
            raise SplitnnError(f"--grid '{grid}' must be RxC, e.g. 3x3, or auto")
        shape = (int(rows), int(cols))
    profile = load_device(node_profile)
    analysis = analyze(load_graph(model, parse_input_shapes(input_shapes)))
    plan = plan_tiles(analysis, nodes, profile, shape, None if fuse_until == "auto" else fuse_until)
    with stderr().status("writing and verifying the tiles..."):
        document = write_tiles(analysis, plan, outdir, reuse=reuse, atol=atol, rtol=rtol)
    if as_json:
        click.echo(json.dumps(document.to_dict(), indent=1))
        return
    _render_tiles(document)


def _render_tiles(document) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = stdout()
    grid, p, memory = document.grid, document.predicted, document.memory
    console.print(
        f"[bold]Tile plan[/bold]: {len(document.stack)} layers fused up to {document.fuse_until}, grid "
        f"{grid.rows}x{grid.cols} on {document.nodes} x {document.node_profile.name}; the rest "
        f"({'nothing' if document.remainder.empty else 'remainder/'}) runs after stitching")
    console.print(
        f"  redundant MACs {document.redundant_macs_ratio:.1%} (overlaps computed twice); largest tile's "
        f"activations {human_bytes(document.max_tile_peak_bytes)} = {document.tile_peak_fraction:.1%} of the "
        f"untiled stack's {human_bytes(document.stack_peak_bytes)}; per node {human_bytes(memory.node_bytes)} "
        f"of {human_bytes(memory.node_usable_bytes)} usable")
    if document.reuse_enabled:
        r = document.reuse
        console.print(f"  reuse: second-phase tiles take the overlaps from their neighbours: {r['macs'] / 1e6:,.0f} M MACs "
                      f"instead of {document.tiled_macs / 1e6:,.0f} M ({r['saved_fraction_of_redundant']:.1%} of the "
                      "redundant MACs saved)")
    for split in document.neuron_splits:
        sizes = ", ".join(human_bytes(part.bytes) for part in split.slices)
        console.print(f"  {split.node} ({human_bytes(split.param_bytes)} of weights) is too big for a node: split by "
                      f"output neurons into {len(split.slices)} slices ({sizes}), one per node")
    speedup = f", speedup {p.speedup:.2f}x" if p.speedup else ""
    console.print(f"  predicted: tiles {p.tiles_phase_s * 1e3:.1f} ms + remainder {p.remainder_s * 1e3:.1f} ms "
                  f"= [bold]{p.makespan_s * 1e3:.1f} ms[/bold] against {p.single_node_s * 1e3:.1f} ms on one node{speedup}")
    table = Table(title="Tiles (regions as rows y0:y1, columns x0:x1)", title_justify="left")
    for column in ("tile", "output region", "input region", "MACs", "peak", "predicted ms"):
        table.add_column(column, justify="right")
    for tile in document.tiles:
        o, i = tile.output_region, tile.input_region
        table.add_row(str(tile.id), f"{o[0]}:{o[1]}, {o[2]}:{o[3]}", f"{i[0]}:{i[1]}, {i[2]}:{i[3]}",
                      f"{tile.macs / 1e6:,.1f} M", human_bytes(tile.peak_bytes), f"{tile.predicted_s * 1e3:.1f}")
    console.print(table)
    v = document.verification
    console.print(f"verified: stitched tiles + remainder against the model, max abs error {v.max_abs_err:.3g}")


def _render(document, plan) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = stdout()
    cut = document.cut
    p = document.predicted
    where = "all on the server" if cut.id == 0 else ("all on the device" if cut.id == len(document.candidates) - 1 else f"after {cut.after_node}")
    link = plan.link
    console.print(
        f"[bold]Chosen cut {cut.id}[/bold] ({where}), objective {plan.objective}, "
        f"{plan.device.name} -> {link.name} {link.uplink_bps / 1e6:g} Mbit/s, rtt {link.rtt_s * 1000:g} ms -> {plan.server.name}"
    )
    console.print(
        f"  sends {', '.join(cut.tensors) or 'nothing'} ({human_bytes(cut.bytes)}); predicted "
        f"device {p.device_s * 1000:.1f} ms + encode {p.encode_s * 1000:.2f} ms + transfer {p.transfer_s * 1000:.1f} ms "
        f"+ server {p.server_s * 1000:.1f} ms = [bold]{p.total_s * 1000:.1f} ms[/bold], "
        f"{p.throughput_fps:.2f} frames/s, {p.energy_j:.3f} J on the device"
    )
    key = {"latency": lambda c: c.predicted.total_s, "throughput": lambda c: -c.predicted.throughput_fps,
           "energy": lambda c: c.predicted.energy_j}[plan.objective]
    best = sorted(plan.candidates, key=lambda c: (not c.feasible, key(c)))[:8]
    table = Table(title=f"Best candidates by {plan.objective} (of {len(plan.candidates)})")
    for column in ("cut", "after node", "bytes", "device ms", "transfer ms", "server ms", "total ms", "fps", "J", "feasible"):
        table.add_column(column, justify="left" if column == "after node" else "right")
    for c in sorted(best, key=lambda c: c.cut.id):
        mark = "[bold green]>[/bold green] " if c.cut.id == cut.id else ""
        table.add_row(f"{mark}{c.cut.id}", c.cut.last_device_node or "(input)", human_bytes(c.cut.bytes),
                      f"{c.predicted.device_s * 1000:.1f}", f"{c.predicted.transfer_s * 1000:.1f}",
                      f"{c.predicted.server_s * 1000:.1f}", f"{c.predicted.total_s * 1000:.1f}",
                      f"{c.predicted.throughput_fps:.2f}", f"{c.predicted.energy_j:.3f}",
                      "yes" if c.feasible else "[red]" + "; ".join(c.violations) + "[/red]")
    console.print(table)
    ruled_out = sum(1 for c in plan.candidates if not c.feasible)
    if ruled_out:
        console.print(f"[dim]{ruled_out} cuts ruled out by constraints (plan.json lists why)[/dim]")
    v = document.verification
    chained = f", device side run from {v.device_artifact}" if v.device_artifact else ""
    console.print(f"verified: max abs error {v.max_abs_err:.3g} (atol {v.atol}, rtol {v.rtol}){chained}")
    for name, rel in document.artifacts.to_dict().items():
        console.print(f"  {name:<15} {rel}")

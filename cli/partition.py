"""`splitnn partition`: choose a cut, write the device and server parts, verify them."""
from __future__ import annotations

import json

import click

from cli.options import input_shape_option, planning_inputs
from cli.render import human_bytes, stderr, stdout


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
@click.option("--json", "as_json", is_flag=True, help="Print plan.json to stdout instead of tables.")
def partition(model: str, input_shapes: tuple[str, ...], outdir: str, device: str, server: str, link: str | None,
              bandwidth: str | None, rtt: str | None, objective: str, cut_tensors: str | None, max_device_share: float | None,
              max_transfer_bytes: str | None, no_ort: bool, atol: float, rtol: float, as_json: bool) -> None:
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
    """
    from onnxsplit.analysis import analyze
    from onnxsplit.export import write_split
    from onnxsplit.input_shapes import parse_input_shapes
    from onnxsplit.loading import load_graph
    from onnxsplit.planning import plan_split

    device_profile, server_profile, the_link, constraints = planning_inputs(
        device, server, link, bandwidth, rtt, max_device_share, max_transfer_bytes)
    forced = tuple(t.strip() for t in cut_tensors.split(",") if t.strip()) if cut_tensors is not None else None

    analysis = analyze(load_graph(model, parse_input_shapes(input_shapes)))
    plan = plan_split(analysis, device_profile, server_profile, the_link, objective, constraints, forced)
    with stderr().status("writing and verifying the parts..."):
        document = write_split(analysis, plan, outdir, ort_format=not no_ort, atol=atol, rtol=rtol)
    if as_json:
        click.echo(json.dumps(document, indent=1))
        return
    _render(document, plan)


def _render(document: dict, plan) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = stdout()
    cut = document["cut"]
    p = document["predicted"]
    where = "all on the server" if cut["id"] == 0 else ("all on the device" if cut["id"] == len(document["candidates"]) - 1 else f"after {cut['after_node']}")
    link = plan.link
    console.print(
        f"[bold]Chosen cut {cut['id']}[/bold] ({where}), objective {plan.objective}, "
        f"{plan.device.name} -> {link.name} {link.uplink_bps / 1e6:g} Mbit/s, rtt {link.rtt_s * 1000:g} ms -> {plan.server.name}"
    )
    console.print(
        f"  sends {', '.join(cut['tensors']) or 'nothing'} ({human_bytes(cut['bytes'])}); predicted "
        f"device {p['device_s'] * 1000:.1f} ms + encode {p['encode_s'] * 1000:.2f} ms + transfer {p['transfer_s'] * 1000:.1f} ms "
        f"+ server {p['server_s'] * 1000:.1f} ms = [bold]{p['total_s'] * 1000:.1f} ms[/bold], "
        f"{p['throughput_fps']:.2f} frames/s, {p['energy_j']:.3f} J on the device"
    )
    key = {"latency": lambda c: c.predicted.total_s, "throughput": lambda c: -c.predicted.throughput_fps,
           "energy": lambda c: c.predicted.energy_j}[plan.objective]
    best = sorted(plan.candidates, key=lambda c: (not c.feasible, key(c)))[:8]
    table = Table(title=f"Best candidates by {plan.objective} (of {len(plan.candidates)})")
    for column in ("cut", "after node", "bytes", "device ms", "transfer ms", "server ms", "total ms", "fps", "J", "feasible"):
        table.add_column(column, justify="left" if column == "after node" else "right")
    for c in sorted(best, key=lambda c: c.cut.id):
        mark = "[bold green]>[/bold green] " if c.cut.id == cut["id"] else ""
        table.add_row(f"{mark}{c.cut.id}", c.cut.last_device_node or "(input)", human_bytes(c.cut.bytes),
                      f"{c.predicted.device_s * 1000:.1f}", f"{c.predicted.transfer_s * 1000:.1f}",
                      f"{c.predicted.server_s * 1000:.1f}", f"{c.predicted.total_s * 1000:.1f}",
                      f"{c.predicted.throughput_fps:.2f}", f"{c.predicted.energy_j:.3f}",
                      "yes" if c.feasible else "[red]" + "; ".join(c.violations) + "[/red]")
    console.print(table)
    ruled_out = sum(1 for c in plan.candidates if not c.feasible)
    if ruled_out:
        console.print(f"[dim]{ruled_out} cuts ruled out by constraints (plan.json lists why)[/dim]")
    v = document["verification"]
    chained = f", device side run from {v['device_artifact']}" if v["device_artifact"] else ""
    console.print(f"verified: max abs error {v['max_abs_err']:.3g} (atol {v['atol']}, rtol {v['rtol']}){chained}")
    for name, rel in document["artifacts"].items():
        console.print(f"  {name:<15} {rel}")

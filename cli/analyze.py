"""`splitnn analyze`: per-node costs, totals and the cut candidates of a model."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from splitnn.cli.options import input_shape_option
from splitnn.cli.render import human_bytes, human_count, sparkline, stdout, warning

if TYPE_CHECKING:
    from rich.text import JustifyMethod

# The two tables' columns and how each is aligned.
_NODE_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("#", "right"), ("name", "left"), ("op", "left"), ("output", "left"), ("MACs", "right"), ("params", "right"),
    ("weights", "right"), ("output bytes", "right"))
_CUT_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("cut", "right"), ("after node", "left"), ("tensors crossing", "left"), ("bytes", "right"),
    ("device MACs", "right"), ("device weights", "right"), ("device peak", "right"))


@click.command()
@click.argument("model", metavar="MODEL.onnx")
@input_shape_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (nodes, totals, cuts, unknown_ops) instead of tables.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write the per-node costs to this CSV file.")
@click.option("--cuts", "cut_rows", default=10, show_default=True, type=click.IntRange(min=0), help="How many cut candidates to list.")
@click.option("--max-nodes", default=40, show_default=True, type=click.IntRange(min=0), help="Node rows to show, the heaviest by MACs (0: all).")
def analyze(model: str, input_shapes: tuple[str, ...], as_json: bool, csv_path: str | None, cut_rows: int, max_nodes: int) -> None:
    """Cost of every node and every place MODEL can be cut.

    For each node: MACs, parameters, parameter bytes and output bytes. For the
    model: totals and the peak activation memory. For each cut between a device
    part and a server part: the tensors that cross it and their bytes, and the
    device side's MACs, weights and peak memory. Weight bytes are never read
    (unless some shapes are left open and a probe run is needed).

    \b
    Examples:
      splitnn analyze resnet18.onnx
      splitnn analyze cls.onnx --input-shape x:1x3x48x192
      splitnn analyze vgg16.onnx --json > vgg16.json
      splitnn analyze model.onnx --input-shape 1x3x224x224 --csv nodes.csv   # a bare shape: a one-input model
    """
    from dataclasses import asdict

    from splitnn.onnxsplit.api import analyze as run_analysis, min_cut_partitions, write_node_csv

    result = run_analysis(model, list(input_shapes))
    for line in result.warnings:
        warning(line)
    if csv_path:
        write_node_csv(result, csv_path)
    partitions = [{k: v for k, v in asdict(cut).items() if k != "device_indices"} for cut in min_cut_partitions(result)]
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "min_cut_partitions": partitions}, indent=1))
        return
    _render(result, cut_rows, max_nodes)
    if partitions:
        stdout().print(f"{len(partitions)} min-cut partition(s) that no prefix of the order gives (rockpro64 -> "
                       "cloud-cpu, uplinks 0.05 to 1000 Mbit/s; `partition` prices them with its own profiles):")
        for cut in partitions:
            stdout().print(f"  {cut['device_nodes']} nodes on the device, the last {cut['last_device_node']}; sends "
                           f"{', '.join(cut['tensors'])} ({human_bytes(cut['bytes'])})")


def _render(result, cut_rows: int, max_nodes: int) -> None:
    from rich.table import Table

    console = stdout()
    graph = result.graph
    totals = result.totals
    io_line = ", ".join(f"{n} {'x'.join(map(str, graph.info(n).shape))} {graph.info(n).dtype}" for n in graph.inputs)
    console.print(f"[bold]{graph.path}[/bold]  opset {graph.opset}  inputs: {io_line}")

    shown = [(node, cost) for node, cost in zip(graph.nodes, result.nodes) if not node.is_constant]
    hidden_constants = len(graph.nodes) - len(shown)
    if max_nodes and len(shown) > max_nodes:
        heaviest = sorted(shown, key=lambda pair: -pair[1].macs)[:max_nodes]
        keep = {node.index for node, _ in heaviest}
        rows = [pair for pair in shown if pair[0].index in keep]
    else:
        rows = shown
    nodes = Table(title=f"Nodes ({len(rows)} of {len(shown)} shown, heaviest by MACs)" if len(rows) < len(shown) else "Nodes")
    for column, justify in _NODE_COLUMNS:
        nodes.add_column(column, justify=justify)
    for node, cost in rows:
        out = node.outputs[0] if node.outputs else ""
        shape = "x".join(map(str, graph.tensors[out].shape)) if out in graph.tensors else "?"
        op = cost.op_type if cost.known else f"[yellow]{cost.op_type}?[/yellow]"
        nodes.add_row(str(node.index), cost.name, op, shape, human_count(cost.macs), human_count(cost.params),
                      human_bytes(cost.param_bytes), human_bytes(cost.output_bytes))
    console.print(nodes)
    notes = []
    if len(rows) < len(shown):
        notes.append(f"{len(shown) - len(rows)} lighter nodes not shown (--max-nodes 0 shows all)")
    if hidden_constants:
        notes.append(f"{hidden_constants} Constant nodes not listed (their values count as weights of their readers)")
    for note in notes + list(graph.shape_notes):
        console.print(f"[dim]{note}[/dim]")

    console.print(
        f"[bold]Totals[/bold]: {human_count(totals.macs)} MACs, {totals.params:,} params, "
        f"{human_bytes(totals.param_bytes)} of weights, peak activations {human_bytes(totals.peak_activation_bytes)}"
    )
    if totals.param_bytes > 1.05 * totals.stored_param_bytes:
        console.print(f"[dim]The file stores {human_bytes(totals.stored_param_bytes)} of weights; the rest is computed "
                      f"from them when a part loads (e.g. int8 cast to float), and is counted at its computed size[/dim]")

    cuts = result.cuts
    picks = result.best_cuts(cut_rows)
    table = Table(title=f"Cut candidates: the {len(picks)} interior cuts that send least, of {len(cuts)} cuts")
    for column, justify in _CUT_COLUMNS:
        table.add_column(column, justify=justify)
    for cut in [cuts[0], *picks, cuts[-1]]:
        share = cut.device_macs / totals.macs if totals.macs else 0.0
        label = "all on server" if cut.id == 0 else ("all on device" if cut.id == len(cuts) - 1 else (cut.last_device_node or ""))
        names = ", ".join(cut.tensors[:3]) + (f" +{len(cut.tensors) - 3}" if len(cut.tensors) > 3 else "")
        table.add_row(str(cut.id), label, names or "-", human_bytes(cut.bytes), f"{human_count(cut.device_macs)} ({share:.0%})",
                      human_bytes(cut.device_param_bytes), human_bytes(cut.device_peak_bytes))
    console.print(table)
    console.print("Bytes crossing each cut, input to output (log scale):")
    console.print(f"  [cyan]{sparkline([cut.bytes for cut in cuts], width=max(console.width - 4, 10))}[/cyan]")

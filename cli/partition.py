"""`splitnn partition`: choose a cut, write the device and server parts, verify them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from splitnn.cli.options import (
    CODEC_CHOICE,
    CUT_CHOICE,
    PLANNING,
    STRATEGY,
    TILE_PLANNING,
    VERIFICATION,
    PlanningChoice,
    input_shape_option,
    use_groups,
)
from splitnn.cli.render import human_bytes, stderr, stdout, warn_unpriced, warning

if TYPE_CHECKING:
    from splitnn.onnxsplit.jobs.choices import CodecChoice, CutChoice, TilePlanning, VerificationChoice


@click.command()
@click.argument("model", metavar="MODEL.onnx")
@input_shape_option
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Folder to write the plan and parts to.")
@use_groups(PLANNING)
@use_groups(CUT_CHOICE)
@use_groups(CODEC_CHOICE)
@use_groups(VERIFICATION)
@use_groups(STRATEGY)
@use_groups(TILE_PLANNING)
@click.option("--json", "as_json", is_flag=True, help="Print plan.json to stdout instead of tables.")
def partition(model: str, input_shapes: tuple[str, ...], outdir: str, planning: PlanningChoice, choice: CutChoice,
              codec: CodecChoice, verification: VerificationChoice, strategy_and_machines: tuple[str, str | None],
              tiles: TilePlanning, as_json: bool) -> None:
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
      splitnn partition cls.onnx -o out/cls --codec int8:calibrated --calibration lines.npz
      splitnn partition net.onnx -o out/net --link 3g --codec auto --calibration lines.npz   (cut and codec together)
      splitnn partition net.onnx -o out/jpeg --link 3g --codec jpeg:90 --calibration photos/ --preprocess imagenet   (the input as a JPEG)
      splitnn partition net.onnx -o out/net --codec int8 --calibration photos/ --preprocess mean=0.5,std=0.5 --max-output-change 'agreement>=0.99'
      splitnn partition det.onnx -o out/det --link 3g --cut relu_3.tmp_0 --reply-codec fp16+lossless   (the answer coded too)
      splitnn partition net.onnx -o out/net --link 3g --codec auto --calibration photos/ --preprocess imagenet --plot pairs.png
      splitnn partition vgg16.onnx -o out/vgg16 --link 4g --trace traces/commute-lte.csv --percentile 95
      splitnn partition vgg16.onnx -o out/tiles --strategy tiles --nodes 4 --grid 3x3 --fuse-until maxpool3_out
      splitnn partition vgg16.onnx -o out/tiles --strategy tiles --nodes 4 --grid 3x3 --reuse
      splitnn partition vgg16.onnx -o out/tiles --strategy tiles --nodes 2 --stacks 3 --fuse-until maxpool5_out
      splitnn partition vgg16.onnx -o out/pipe --machines machines.toml --objective throughput   (N machines)
    """
    from splitnn.onnxsplit.jobs.partition import PartitionJob, partition_model
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes

    strategy, machines = strategy_and_machines
    if machines is not None:
        _refuse_link_options(planning)
    job = PartitionJob(strategy, planning.load() if strategy == "vertical" else None, choice, codec, verification,
                       tiles, machines)
    result = partition_model(model, outdir, job, parse_input_shapes(input_shapes), _hooks(job))
    if codec.plot is not None and result.trials is not None:
        _plot_trials(codec.plot, model, result)
    if as_json:
        click.echo(json.dumps(result.document.to_dict(), indent=1))
    elif strategy == "tiles":
        _render_tiles(result.document)
    elif strategy == "pipeline":
        from splitnn.cli.pipeline_tables import render_pipeline

        render_pipeline(result.document)
    elif choice.adaptive:
        _render_adaptive(result.document)
    else:
        _render(result.document, result.plan)


def _refuse_link_options(planning: PlanningChoice) -> None:
    """With --machines the machines and links are the file's: the two-machine split's options are refused, named."""
    from splitnn.onnxsplit.core.errors import SplitnnError

    given = [flag for flag, value in (("--link", planning.link), ("--bandwidth", planning.bandwidth_bps),
                                      ("--rtt", planning.rtt_s), ("--max-device-share", planning.max_device_share),
                                      ("--max-transfer-bytes", planning.max_transfer_bytes)) if value is not None]
    if given:
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a split between a "
                           "device and a server: with --machines the links are the file's [[link]] entries")


def _hooks(job: Any) -> Any:
    """What the job says, shown as this command shows it: notes and warnings on stderr, a spinner around each long
    step, a progress bar for --codec auto's pairs."""
    from splitnn.cli.progress import Progress
    from splitnn.onnxsplit.jobs.partition import JobHooks

    def planned(plan: Any) -> None:
        warn_unpriced(plan.unpriced)
        if job.strategy == "tiles":
            _warn_little_help(plan, job.tiles.stacks is None and job.tiles.fuse_until is None)

    return JobHooks(note=lambda text: stderr().print(f"note: {text}"), planned=planned,
                    status=lambda text: stderr().status(text), progress=Progress)


def _plot_trials(target: str, model: str, result: Any) -> None:
    """--plot: every pair --codec auto priced, drawn."""
    from splitnn.onnxsplit.measure.charts import codec_trials_png

    plan, document = result.plan, result.document
    where = f"{plan.device.name} -> {plan.link.name} -> {plan.server.name}"
    codec_trials_png(target, list(result.trials), f"--codec auto on {Path(model).name}, {where}: chose cut "
                                                  f"{document.cut.id} in {document.codec.name if document.codec else 'none'}")
    stderr().print(f"wrote {target}")


def _render_adaptive(document: Any) -> None:
    console = stdout()
    console.print(f"[bold]Adaptive plan[/bold]: {len(document.kept)} cuts kept for "
                  f"{document.low_bps / 1e6:.3g} to {document.high_bps / 1e6:.3g} Mbit/s, {document.link.name} round "
                  f"trip; the device {'can answer alone' if document.answers_alone else 'cannot hold the whole model'}")
    for kept in document.kept:
        where = "all on the device" if not kept.cut.tensors else f"sends {', '.join(kept.cut.tensors)}"
        best = ("kept to answer alone" if kept.low_bps == kept.high_bps and not kept.cut.tensors
                else f"best from {kept.low_bps / 1e6:.3g} to {kept.high_bps / 1e6:.3g} Mbit/s")
        coded = f" as {human_bytes(kept.codec.coded_bytes)} in {kept.codec.name}" if kept.codec is not None else ""
        console.print(f"  cut {kept.cut.id} ({where}, {human_bytes(kept.cut.bytes)}{coded}): {best}; "
                      f"{kept.fixed_s * 1e3:.1f} ms + {kept.wire_bits / 1e6:.3g} Mbit / uplink rate")
    if document.reply_codec is not None:
        _render_reply_codec(document.reply_codec)
    v = document.verification
    console.print(f"verified: every kept cut chained against the model, max abs error {v.max_abs_err:.3g}, device "
                  f"side run from {v.device_artifact}")
    if v.int8_note():
        console.print(v.int8_note())


def _warn_little_help(plan, chosen_depth: bool = True) -> None:
    """One line where the tiles can give little: the tiled layers are a small share of the model's time, or take
    too little time for the cluster's round trips (`chosen_depth`: the planner chose how deep the stacks go)."""
    from splitnn.onnxsplit.tiles.planning import STITCH_ROUND_TRIP_S

    speedup = plan.single_node_s / plan.makespan_s if plan.makespan_s else 1.0
    if plan.coverage is None or (plan.speedup_bound >= 1.15 and speedup >= 1.1):
        return
    if plan.speedup_bound < 1.15:
        c = plan.coverage
        stop = next(iter(c.stops), None)
        where = f"; the tileable region stops at {stop.node} ({stop.op_type}): {stop.reason}" if stop else ""
        if chosen_depth and c.deepest_stack_macs > 2 * plan.tiled_macs_total:
            where = (f"; deeper stacks (to {c.deepest_stack_macs / max(c.model_macs, 1):.0%} of the MACs) are predicted "
                     f"slower: each costs a {STITCH_ROUND_TRIP_S * 1e3:.0f} ms round trip through the cluster")
        warning(f"tiles can help little here: the tiled layers are {plan.tiled_time_share:.0%} of the model's "
                f"predicted time on one node, so {plan.nodes} nodes give at most {plan.speedup_bound:.2f}x{where}")
        return
    moved = sum(p.transfer_bytes for p in plan.stacks)
    warning(f"tiles can help little here: the best plan is predicted at {plan.makespan_s * 1e3:.1f} ms against "
            f"{plan.single_node_s * 1e3:.1f} ms on one node ({speedup:.2f}x): the tiled layers take "
            f"{sum(p.untiled_s for p in plan.stacks) * 1e3:.1f} ms on one node, their tiles move "
            f"{human_bytes(moved)} per image through the client ({sum(p.transfer_s for p in plan.stacks) * 1e3:.1f} ms "
            f"on the {plan.cluster_link_bps / 1e6:,.0f} Mbit/s cluster link), and each stack costs a "
            f"{STITCH_ROUND_TRIP_S * 1e3:.0f} ms round trip through the cluster")


def _render_coverage(console, document) -> None:
    """How much of the model the stacks tile, what their tiles move on the cluster link, and where the tileable
    region stops (and why)."""
    p = document.predicted
    if p.stack_transfer_bytes and p.cluster_link_bps:
        moved = sum(p.stack_transfer_bytes)
        console.print(f"  the tiles move {human_bytes(moved)} per image between the client and the nodes (crops out, "
                      f"outputs back): {moved * 8 / p.cluster_link_bps * 1e3:.1f} ms on the "
                      f"{p.cluster_link_bps / 1e6:,.0f} Mbit/s cluster link (--cluster-link)")
    c = document.coverage
    if c is None:
        return
    line = (f"  tiled: {c.tiled_macs / 1e6:,.1f} M of the model's {c.model_macs / 1e6:,.1f} M MACs "
            f"({c.tiled_macs / max(c.model_macs, 1):.0%}), {c.tiled_time_share:.0%} of its time on one node")
    if c.whole_map_node is not None and c.tiled_macs > c.macs_before_whole_map:
        line += (f"; past the model's first layer that mixes the whole map ({c.whole_map_node}, {c.whole_map_op}), "
                 "whose vector the client computes")
    elif c.whole_map_node is not None:
        line += (f"; {c.tiled_macs / max(c.macs_before_whole_map, 1):.0%} of the "
                 f"{c.macs_before_whole_map / 1e6:,.1f} M ahead of every layer that mixes the whole map (the first: "
                 f"{c.whole_map_node}, {c.whole_map_op})")
    console.print(line)
    if c.client_steps:
        console.print(f"  the stacks can go past {c.client_steps} squeeze-and-excitation blocks: between two stacks the "
                      "client computes the block's vector from the stitched map, and every tile of the next reads it")
    if c.live_after_stack:
        console.print(f"  the longest stack ends after {c.deepest_stack_layers} of the {c.region_layers} tileable "
                      f"layers: past it these tensors are live ({', '.join(c.live_after_stack[:4])}), and a stack "
                      "ends only where each live tensor is a map a tileable layer computed first, at most 4 of them")
    for stop in c.stops[:4]:
        console.print(f"  the tileable region stops at {stop.node} ({stop.op_type}) after {stop.after_layers} "
                      f"layers: {stop.reason}")
    if len(c.stops) > 4:
        console.print(f"  ... and at {len(c.stops) - 4} more nodes (plan.json: coverage.stops)")


def _render_tiles(document) -> None:
    from rich.table import Table

    console = stdout()
    grid, p, memory = document.grid, document.predicted, document.memory
    stacks = document.all_stacks
    rest = f"the rest ({'nothing' if document.remainder.empty else 'remainder/'}) runs after stitching"
    if len(stacks) == 1:
        maps = len(stacks[0].output_names)
        ends = document.fuse_until if maps == 1 else f"{document.fuse_until} (and {maps - 1} more maps)"
        console.print(f"[bold]Tile plan[/bold]: {len(document.stack)} layers fused up to {ends}, grid "
                      f"{grid.rows}x{grid.cols} on {document.nodes} x {document.node_profile.name}; {rest}")
    else:
        console.print(f"[bold]Tile plan[/bold]: {len(stacks)} fused stacks in turn on {document.nodes} x "
                      f"{document.node_profile.name}, each stitched before the next is tiled; {rest}")
        for k, s in enumerate(stacks):
            ends = s.fuse_until if len(s.output_names) == 1 else f"{s.fuse_until} (and {len(s.output_names) - 1} more maps)"
            step = "" if s.client_step is None else (
                f" (after the client's {len(s.client_step.nodes)}-node vector step, "
                f"{s.client_step.predicted_s * 1e3:.1f} ms)")
            console.print(f"  stack {k + 1}: {len(s.stack)} layers up to {ends}, grid {s.grid.rows}x{s.grid.cols}, "
                          f"redundant MACs {s.tiled_macs / s.stack_macs - 1:.1%}, {s.predicted_phase_s * 1e3:.1f} ms "
                          f"predicted{step}")
    _render_coverage(console, document)
    lead = (f"  redundant MACs {document.redundant_macs_ratio:.1%} (overlaps computed twice); " if len(stacks) == 1
            else "  ")
    console.print(
        f"{lead}largest tile's activations{' (stack 1)' if len(stacks) > 1 else ''} "
        f"{human_bytes(document.max_tile_peak_bytes)} = {document.tile_peak_fraction:.1%} of the "
        f"untiled stack's {human_bytes(document.stack_peak_bytes)}; per node {human_bytes(memory.node_bytes)} "
        f"of {human_bytes(memory.node_usable_bytes)} usable")
    for k, s in enumerate(stacks):
        if not s.reuse.enabled or s.reuse.macs is None or s.reuse.saved_fraction_of_redundant is None:
            continue
        where = f" (stack {k + 1})" if len(stacks) > 1 else ""
        console.print(f"  reuse{where}: second-phase tiles take the overlaps from their neighbours: "
                      f"{s.reuse.macs / 1e6:,.0f} M MACs instead of {s.tiled_macs / 1e6:,.0f} M "
                      f"({s.reuse.saved_fraction_of_redundant:.1%} of the redundant MACs saved)")
    for split in document.neuron_splits:
        sizes = ", ".join(human_bytes(part.bytes) for part in split.slices)
        why = "is too big for a node" if split.why == "memory" else "is predicted faster across the nodes"
        console.print(f"  {split.node} ({human_bytes(split.param_bytes)} of weights) {why}: split by "
                      f"output neurons into {len(split.slices)} slices ({sizes}), one per node")
    speedup = f", speedup {p.speedup:.2f}x" if p.speedup else ""
    console.print(f"  predicted: tiles {p.tiles_phase_s * 1e3:.1f} ms + remainder {p.remainder_s * 1e3:.1f} ms "
                  f"= [bold]{p.makespan_s * 1e3:.1f} ms[/bold] against {p.single_node_s * 1e3:.1f} ms on one node{speedup}")
    table = Table(title="Tiles (regions as rows y0:y1, columns x0:x1)", title_justify="left")
    for column in ("stack", "tile", "output region", "input region", "MACs", "peak", "predicted ms"):
        table.add_column(column, justify="right")
    for k, s in enumerate(stacks):
        for tile in s.tiles:
            o, i = tile.output_region, tile.input_region
            table.add_row(str(k + 1), str(tile.id), f"{o[0]}:{o[1]}, {o[2]}:{o[3]}", f"{i[0]}:{i[1]}, {i[2]}:{i[3]}",
                          f"{tile.macs / 1e6:,.1f} M", human_bytes(tile.peak_bytes), f"{tile.predicted_s * 1e3:.1f}")
    console.print(table)
    v = document.verification
    console.print(f"verified: stitched tiles + remainder against the model, max abs error {v.max_abs_err:.3g}")


def _render_chosen(document, plan) -> None:
    """The chosen cut, where it splits the model, and what is predicted for it."""
    console = stdout()
    cut = document.cut
    p = document.predicted
    last_prefix = max(c.cut.id for c in plan.candidates if c.cut.device_indices is None)
    if cut.id == 0:
        where = "all on the server"
    elif cut.device_node_names:
        where = f"a min-cut partition: {len(cut.device_node_names)} nodes on the device, the last {cut.after_node}"
    else:
        where = "all on the device" if cut.id == last_prefix else f"after {cut.after_node}"
    console.print(f"[bold]Chosen cut {cut.id}[/bold] ({where}), objective {plan.objective}, {document.planned_for}")
    coded = f", {human_bytes(document.codec.coded_bytes)} as {document.codec.name}" if document.codec is not None else ""
    console.print(
        f"  sends {', '.join(cut.tensors) or 'nothing'} ({human_bytes(cut.bytes)}{coded}); predicted "
        f"device {p.device_s * 1000:.1f} ms + encode {p.encode_s * 1000:.2f} ms + transfer {p.transfer_s * 1000:.1f} ms "
        f"+ server {p.server_s * 1000:.1f} ms" + (f" + decode {p.decode_s * 1000:.2f} ms" if p.decode_s else "")
        + f" = [bold]{p.total_s * 1000:.1f} ms[/bold], "
        f"{p.throughput_fps:.2f} frames/s, {_joules(p.energy_j)} on the device"
    )


def _render(document, plan) -> None:
    from rich.table import Table

    console = stdout()
    _render_chosen(document, plan)
    if document.over_trace is not None:
        t = document.over_trace
        change = t.typical_expected_s / t.expected_s - 1 if t.expected_s else 0.0
        console.print(f"  over the trace {t.trace} ({t.steps} steps): {t.statistic} latency [bold]{t.expected_s * 1e3:.1f} "
                      f"ms[/bold]; the link's typical rate alone would choose cut {t.typical_cut_id}: "
                      f"{t.typical_expected_s * 1e3:.1f} ms over the trace ({change:+.1%})")
    for kept in document.over_range or ():
        where = "all on the device" if not kept.tensors else f"sends {', '.join(kept.tensors)}"
        console.print(f"  best from {kept.low_bps / 1e6:.3g} to {kept.high_bps / 1e6:.3g} Mbit/s: cut {kept.cut_id} "
                      f"({where}), {kept.fixed_s * 1e3:.1f} ms + {kept.wire_bits / 1e6:.3g} Mbit / uplink rate")
    key = {"latency": lambda c: c.predicted.total_s, "throughput": lambda c: -c.predicted.throughput_fps,
           "energy": lambda c: c.predicted.energy_j}[plan.objective]
    best = sorted(plan.candidates, key=lambda c: (not c.feasible, key(c)))[:8]
    table = Table(title=f"Best candidates by {plan.objective} (of {len(plan.candidates)})")
    for column in ("cut", "after node", "bytes", "device ms", "transfer ms", "server ms", "total ms", "fps", "J", "feasible"):
        table.add_column(column, justify="left" if column == "after node" else "right")
    for c in sorted(best, key=lambda c: c.cut.id):
        mark = "[bold green]>[/bold green] " if c.cut.id == document.cut.id else ""
        table.add_row(f"{mark}{c.cut.id}", c.cut.last_device_node or "(input)", human_bytes(c.cut.bytes),
                      f"{c.predicted.device_s * 1000:.1f}", f"{c.predicted.transfer_s * 1000:.1f}",
                      f"{c.predicted.server_s * 1000:.1f}", f"{c.predicted.total_s * 1000:.1f}",
                      f"{c.predicted.throughput_fps:.2f}", _joules(c.predicted.energy_j, unit=False),
                      "yes" if c.feasible else "[red]" + "; ".join(c.violations) + "[/red]")
    console.print(table)
    ruled_out = sum(1 for c in plan.candidates if not c.feasible)
    if ruled_out:
        console.print(f"[dim]{ruled_out} cuts ruled out by constraints (plan.json lists why)[/dim]")
    v = document.verification
    chained = f", device side run from {v.device_artifact}" if v.device_artifact else ""
    console.print(f"verified: max abs error {v.max_abs_err:.3g} (atol {v.atol:.3g}, rtol {v.rtol}){chained}")
    if v.int8_note():  # how an int8 model was checked, and the bound it is held to (artifacts/verification.py)
        console.print(v.int8_note())
    if document.codec_trials:
        _render_trials(document.codec_trials)
    if document.codec is not None:
        _render_codec(document.codec)
    if document.reply_codec is not None:
        _render_reply_codec(document.reply_codec)
    for name, rel in document.artifacts.to_dict().items():
        console.print(f"  {name:<15} {rel}")


def _render_trials(trials) -> None:
    """The pairs --codec auto priced, fastest first (the first 12, and the chosen one)."""
    from rich.table import Table

    table = Table(title="--codec auto: cut and codec, priced at their measured bytes", title_justify="left")
    for column in ("cut", "sends", "codec", "bytes up", "predicted ms", "verdict"):
        table.add_column(column, justify="right" if column in ("cut", "bytes up", "predicted ms") else "left",
                         overflow="fold")
    shown = [t for i, t in enumerate(trials) if i < 12 or t.verdict.startswith("chosen")]
    for t in shown:
        sends = ", ".join(t.tensors) or "(nothing)"
        style = "bold" if t.verdict.startswith("chosen") else ""
        up = "-" if t.request_bytes is None else human_bytes(t.request_bytes)
        table.add_row(str(t.cut_id), sends, t.codec, up, f"{t.total_s * 1e3:.1f}", t.verdict, style=style)
    stdout().print(table)
    if len(trials) > len(shown):
        stdout().print(f"[dim]{len(trials) - len(shown)} more pairs in plan.json (codec_trials)[/dim]")


def _render_codec(c) -> None:
    from splitnn.onnxsplit.codecs.specs import image_spec

    where = (f"on {c.inputs} input(s) of {c.calibration}" if c.calibration else "on the verification input")
    if c.agreement is not None:
        top1 = f"; the same top class on {c.agreement:.1%} of them"
    else:
        top1 = ""
    stdout().print(f"codec {c.name}: the cut's tensors {human_bytes(c.raw_bytes)} -> [bold]{human_bytes(c.coded_bytes)}"
                   f"[/bold] ({c.ratio:.2f}x fewer bytes) {where}; the outputs through it "
                   f"differ by up to {c.max_abs_err:.3g} ({c.max_rel_err:.2%} of their largest value){top1}; "
                   f"encoding {c.encode_s * 1e3:.2f} ms here, {c.device_encode_s * 1e3:.2f} ms on the device "
                   f"(x{c.device_scale:.2f}), decoding {c.decode_s * 1e3:.2f} ms here, "
                   f"{c.server_decode_s * 1e3:.2f} ms on the server (x{c.server_scale:.2f}). "
                   "[dim]The chosen cut's prediction counts these bytes; the other candidates' are float32.[/dim]")
    if image_spec(c.name) is not None:
        for r in c.ranges:
            spans = ", ".join(f"{low:.4g} to {low + 255 * step:.4g}" for low, step in zip(r.low, r.step))
            per = " per channel" if len(r.low) > 1 else ""
            stdout().print(f"  {r.name} travels as an image: values {spans}{per} are pixel codes 0 to 255 (the range "
                           "seen on the inputs above; the layout is read from the shape)")


def _render_reply_codec(r) -> None:
    top1 = f"; the same top class on {r.agreement:.1%} of them" if r.agreement is not None else ""
    stdout().print(f"reply codec {r.name}: the answer {human_bytes(r.raw_bytes)} -> [bold]{human_bytes(r.coded_bytes)}"
                   f"[/bold] ({r.ratio:.2f}x fewer bytes) on {r.inputs} input(s); the outputs (through every codec) "
                   "differ by up to "
                   f"{r.max_abs_err:.3g} ({r.max_rel_err:.2%} of their largest value){top1}; predicted encoding "
                   f"{r.server_encode_s * 1e3:.2f} ms on the server (in the transfer), decoding "
                   f"{r.device_decode_s * 1e3:.2f} ms on the device (the decode stage).")


def _joules(energy_j: float | None, unit: bool = True) -> str:
    """A predicted energy, or 'unknown' where the device profile's power was not measured."""
    if energy_j is None:
        return "unknown energy" if unit else "?"
    return f"{energy_j:.3f} J" if unit else f"{energy_j:.3f}"

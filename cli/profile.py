"""`splitnn profile`: time every node with onnxruntime's profiler and fit a device profile."""
from __future__ import annotations

import dataclasses
import functools
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from splitnn.cli.options import OptionGroup, input_shape_option, use_groups
from splitnn.cli.progress import Progress
from splitnn.cli.render import stderr, stdout
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL


@dataclass(frozen=True)
class Timing:
    """How the profiler runs each model."""

    runs: int
    warmup: int
    level: str
    threads: int | None


TIMING = OptionGroup("timing", (
    (("--runs", "runs"), dict(default=10, show_default=True, type=click.IntRange(1),
                              help="Timed runs per model (the median is kept).")),
    (("--warmup", "warmup"), dict(default=2, show_default=True, type=click.IntRange(0), help="Untimed runs first.")),
    (("--level", "level"), dict(type=click.Choice(["none", "basic", "extended", "all"]), default=DEVICE_PART_LEVEL,
                                show_default=True,
                                help="onnxruntime graph optimizations; basic is what the ORT-format device part gets.")),
    (("--threads", "threads"), dict(type=click.IntRange(1),
                                    help="Intra-op threads (default: onnxruntime's, one per core).")),
), Timing)


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL.onnx...")
@input_shape_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Profile file to write (.toml).")
@use_groups(TIMING)
@click.option("--base", default="host", show_default=True,
              help="Profile that supplies what the models cannot determine (RAM, power, unused classes).")
@click.option("--name", help="Name inside the profile (default: profiled-HOSTNAME).")
@click.option("--compute-watts", type=click.FloatRange(0, min_open=True), metavar="W",
              help="The board's power while computing, as a power meter read it (default: unknown, and energy "
                   "is not predicted with this profile).")
@click.option("--json", "as_json", is_flag=True, help="Print the fit and the per-group timings as JSON.")
def profile(models: tuple[str, ...], input_shapes: tuple[str, ...], output: str, timing: Timing, base: str,
            name: str | None, compute_watts: float | None, as_json: bool) -> None:
    """Time every node of MODEL(s) on this machine and fit a device profile to the times.

    Run it on the board to be modelled. onnxruntime's own profiler times each
    kernel (median of --runs after --warmup); fused kernels are mapped back to
    the nodes of the file. The roofline figures (per-class rates, memory
    bandwidth, per-node overhead) are then fitted to those times, and the
    profile is written as TOML for --device/--server. Several models give the
    fit more kinds of layers to learn from. Two codec references (an image
    as WebP, a feature map as int8+lossless) are timed too, so that a codec's
    time measured where partition runs scales to the board by their ratio.

    \b
    Examples:
      splitnn profile resnet18.onnx -o board.toml
      splitnn profile resnet18.onnx mobilenet.onnx --runs 20 -o board.toml --json
      splitnn partition vgg16.onnx -o out/vgg16 --device board.toml
    """
    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.codec_probe import with_codec_references
    from splitnn.cost_models.fitting import fit_profile, fit_report_lines
    from splitnn.cost_models.node_timing import time_nodes
    from splitnn.cost_models.profiles import device_to_toml
    from splitnn.onnxsplit.core.atomic_files import write_text_atomic
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes
    from splitnn.onnxsplit.model.loading import load_graph

    target = Path(output)
    if target.suffix != ".toml":
        raise SplitnnError(f"-o '{output}' must name a .toml file (profiles are TOML)")
    shapes = parse_input_shapes(input_shapes)
    graphs = [load_graph(model, shapes) for model in models]  # a bad model or shape is said before any timing
    base_profile = load_device(base)  # "host" is measured on first use

    measurements = []
    with Progress() as progress:
        for model, graph in zip(models, graphs):
            stage = f"timing {Path(model).name}"
            timings = time_nodes(graph, runs=timing.runs, warmup=timing.warmup, level=timing.level, threads=timing.threads,
                                 progress=functools.partial(progress, stage))
            measurements.append((graph, timings))
    fit = fit_profile(measurements, base_profile, name or f"profiled-{socket.gethostname()}", compute_watts)
    with stderr().status("timing the codec references..."):
        fit = dataclasses.replace(fit, profile=with_codec_references(fit.profile))
    write_text_atomic(target, device_to_toml(fit.profile, fit_report_lines(fit, measurements)))

    if as_json:
        click.echo(json.dumps({**fit.to_dict(), "output": str(target), "timings": _timings_json(measurements)}, indent=1))
        return
    _render(fit, measurements, target)


def _timings_json(measurements) -> list[dict[str, Any]]:
    return [
        {
            "model": t.model, "level": t.level, "runs": t.runs, "warmup": t.warmup, "run_s": t.run_seconds, "plain_run_s": t.plain_seconds,
            "kernel_s": t.kernel_seconds, "eliminated": [g.nodes[i].name for i in t.eliminated],
            "groups": [{"kernels": list(k.kernels), "nodes": [g.nodes[i].name for i in k.nodes], "seconds": k.seconds}
                       for k in t.groups],
        }
        for g, t in measurements
    ]


def _render(fit, measurements, target: Path) -> None:
    from rich.table import Table

    console = stdout()
    p = fit.profile
    table = Table(title=f"Fitted profile '{p.name}'", title_justify="left")
    for column in ("figure", "value", "fitted", "groups", "meas. ms", "pred. ms", "error"):
        table.add_column(column, justify="left" if column in ("figure", "fitted") else "right", no_wrap=True, min_width=6)
    for c in fit.classes:
        bandwidths = {"memory": p.memory_bytes_per_s, "weights": p.weight_bandwidth}
        unit = "GB/s" if c.name in bandwidths else "GMAC/s"
        value = f"{bandwidths.get(c.name, p.macs_per_s.get(c.name, 0.0)) / 1e9:.3g} {unit}"
        fitted = ("yes" if c.fitted else f"[yellow]partly (base {(c.base_value or 0) / 1e9:.3g} {unit})[/yellow]"
                  if c.pulled else "[yellow]no (base)[/yellow]")
        table.add_row(c.name, value, fitted, str(c.groups),
                      f"{c.measured_s * 1e3:.3f}", f"{c.predicted_s * 1e3:.3f}", f"{c.error:+.1%}" if c.groups else "")
    if p.dense_conv_pixel_overhead:
        table.add_row("conv pixels", f"{p.dense_conv_pixel_overhead:.3g} px", "yes" if fit.pixel_overhead_fitted
                      else "[yellow]no (base)[/yellow]", "", "", "", "")
    table.add_row("overhead", f"{p.per_node_overhead_s * 1e6:.3g} µs", "yes", "", "", "", "")
    if p.image_codec_s is not None and p.array_codec_s is not None:
        table.add_row("image codec", f"{p.image_codec_s * 1e3:.3g} ms", "timed", "", "", "", "")
        table.add_row("array codec", f"{p.array_codec_s * 1e3:.3g} ms", "timed", "", "", "", "")
    console.print(table)
    models = Table(title="Per model (kernel medians, less what the profiler adds: the plain run)", title_justify="left")
    for column in ("model", "kernels", "groups", "elim.", "meas. ms", "pred. ms", "error", "group err"):
        models.add_column(column, justify="left" if column == "model" else "right", no_wrap=column != "model")
    for (graph, timings), m in zip(measurements, fit.models):
        models.add_row(Path(m.model).name, str(sum(len(g.kernels) for g in timings.groups)), str(len(timings.groups)),
                       str(len(timings.eliminated)), f"{m.measured_s * 1e3:.3f}", f"{m.predicted_s * 1e3:.3f}",
                       f"{m.error:+.1%}", f"{m.group_error:.1%}")
    console.print(models)
    console.print(f"wrote {target} (use it as --device {target})")
    console.print("[dim]groups: kernels onnxruntime ran, mapped back to the nodes they compute; elim.: nodes it "
                  "folded away; group err: time-weighted mean error per group[/dim]")
    if any(c.pulled for c in fit.classes):
        console.print("[dim]partly: these models moved the figure away from the base profile's without pinning it "
                      "down (half or twice it fits them about as well one way); profile models that lean on it to "
                      "fit it[/dim]")

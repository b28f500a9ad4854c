"""splitnn's Python API: what `splitnn analyze`, `partition` and `run-bench` do, as typed functions.

Every name here is also importable from the top of the package:

    import splitnn

    analysis = splitnn.analyze("vgg16.onnx")
    print(analysis.totals.macs)
    for device in ("raspberry-pi-4", "rockpro64", "host"):
        plan = splitnn.partition("vgg16.onnx", f"out/{device}", device=device, link="4g")
        print(device, plan.cut.tensors, plan.predicted.total_s)
    report = splitnn.run_bench("out/rockpro64", requests=5)
    print(report.stages["e2e_s"].p50, report.predicted_s)

Errors are raised as SplitnnError, with the one-line message the command line prints.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import Cut
from splitnn.onnxsplit.artifacts.plan_file import PlanFile
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.jobs.choices import PlanningInputs, planning_inputs

if TYPE_CHECKING:  # (imported where used: each pulls in its own layer's modules)
    from splitnn.onnxsplit.jobs.partition import JobHooks
    from splitnn.onnxsplit.artifacts.pipeline_records import PipelineWeightsUpdateRecord
    from splitnn.onnxsplit.artifacts.plan_file import WeightsUpdateRecord
    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport
    from splitnn.onnxsplit.measure.pipeline import PipelineBenchReport
    from splitnn.onnxsplit.measure.split_report import SplitBenchReport
    from splitnn.onnxsplit.measure.tile_report import TileBenchReport
    from splitnn.onnxsplit.runtime.device import DeviceClient
    from splitnn.onnxsplit.runtime.server import ModelServer

__all__ = ["Analysis", "PlanningInputs", "SplitnnError", "analyze", "device", "load_link", "load_plan",
           "load_profile", "min_cut_partitions", "partition", "planning_inputs", "run_bench", "serve",
           "update_weights", "write_node_csv"]

Shapes = Mapping[str, Sequence[int]] | Sequence[str] | str | None


def _shapes(input_shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """{name: shape}, from a mapping or from the command line's "name:1x3x224x224" strings."""
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes

    if input_shapes is None:
        return {}
    if isinstance(input_shapes, str):  # one spec, as the command line takes it
        return parse_input_shapes([input_shapes])
    if isinstance(input_shapes, Mapping):
        return {name: tuple(int(d) for d in shape) for name, shape in input_shapes.items()}
    return parse_input_shapes(list(input_shapes))


def analyze(model: str | Path, input_shapes: Shapes = None) -> Analysis:
    """The model's cost per node (MACs, bytes, parameters), its totals and every place it can be cut.

    `input_shapes` fixes free dimensions: {"x": (1, 3, 224, 224)}, ["x:1x3x224x224"] or "x:1x3x224x224".

    >>> splitnn.analyze("vgg16.onnx").totals.macs  # doctest: +SKIP
    15470264320
    """
    from splitnn.onnxsplit.analysis.analyze import analyze as analyze_graph
    from splitnn.onnxsplit.model.loading import load_graph

    return analyze_graph(load_graph(model, _shapes(input_shapes)))


def min_cut_partitions(analysis: Analysis, device: str = "rockpro64", server: str = "cloud-cpu",
                       link: str = "4g") -> list[Cut]:
    """The latency-optimal partitions (DADS's minimum cut) that are not prefixes of the graph's order, across a
    sweep of uplinks for `device` and `server`: where a branch goes to the device to its own depth. Empty for a
    chain, whose every partition is a prefix cut (Analysis.cuts).

    >>> [cut.device_names for cut in splitnn.min_cut_partitions(splitnn.analyze("dag.onnx"))]  # doctest: +SKIP
    """
    from splitnn.onnxsplit.analysis.cuts import placeable_indices
    from splitnn.onnxsplit.analysis.min_cut import closed_sets_are_prefixes

    if closed_sets_are_prefixes(analysis.graph, placeable_indices(analysis.graph)):
        return []  # (and the planner is not imported)
    from splitnn.onnxsplit.vertical.planning import dag_cuts

    return dag_cuts(analysis, load_profile(device), load_profile(server), load_link(link))


def write_node_csv(analysis: Analysis, path: str | Path) -> None:
    """One row per node (index, name, op, output shape, MACs, parameters and their bytes, output bytes, whether the
    op is priced) to the CSV file `path`, written whole or not at all.

    >>> splitnn.write_node_csv(splitnn.analyze("vgg16.onnx"), "vgg16-nodes.csv")  # doctest: +SKIP
    """
    import csv
    import io

    from splitnn.onnxsplit.core.atomic_files import write_text_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "name", "op_type", "output_shape", "macs", "params", "param_bytes", "output_bytes",
                     "known_op"])
    graph = analysis.graph
    for node, cost in zip(graph.nodes, analysis.nodes):
        out = node.outputs[0] if node.outputs else ""
        shape = "x".join(map(str, graph.tensors[out].shape)) if out in graph.tensors else ""
        writer.writerow([node.index, cost.name, cost.op_type, shape, cost.macs, cost.params, cost.param_bytes,
                         cost.output_bytes, cost.known])
    write_text_atomic(path, buffer.getvalue())


def update_weights(folder: str | Path, retrained: str | Path) -> WeightsUpdateRecord | PipelineWeightsUpdateRecord:
    """Put the weights of `retrained` (the same graph, new weights) into the split in `folder`; returns the report:
    per part the tensors changed and their bytes, and what the device must download (see
    `splitnn update-weights --help`). For a pipeline plan, per stage: what changed and what its machine must
    download.

    >>> splitnn.update_weights("out/vgg16", "vgg16-finetuned.onnx").device_download_bytes  # doctest: +SKIP
    """
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy
    from splitnn.onnxsplit.pipeline.weights_update import update_pipeline_weights
    from splitnn.onnxsplit.vertical.weights_update import update_weights as update

    if plan_strategy(folder) == "pipeline":
        return update_pipeline_weights(folder, retrained)
    return update(str(folder), str(retrained))


def load_profile(name: str) -> DeviceProfile:
    """A device profile: a built-in name (rockpro64, raspberry-pi-4, cloud-cpu, ...), "host" (this machine,
    measured once and cached), "host-1thread", or a .toml file.

    >>> splitnn.load_profile("rockpro64").usable_ram_bytes  # doctest: +SKIP
    """
    from splitnn.cost_models.catalog import load_device

    return load_device(name)


def load_link(name: str | None = None, bandwidth: str | float | None = None, rtt: str | float | None = None
              ) -> LinkProfile:
    """A link: a built-in name (cat1, 3g, 4g, wifi), optionally overridden, or a custom one. `bandwidth` in bits
    per second or as text ("5.85Mbit"); `rtt` in seconds or as text ("40ms").

    >>> splitnn.load_link("4g", bandwidth="20Mbit").uplink_bps  # doctest: +SKIP
    20000000.0
    """
    from splitnn.cost_models.catalog import load_link as load_named_link

    return load_named_link(name, _bps(bandwidth), _seconds(rtt))


def load_plan(folder: str | Path) -> PlanFile:
    """The typed plan `partition` wrote into `folder`, of whatever kind it is (VerticalPlanFile, TilePlanFile,
    AdaptivePlanFile or PipelinePlanFile); `plan.strategy` says which.

    >>> splitnn.load_plan("out/vgg16").strategy  # doctest: +SKIP
    'vertical'
    """
    from splitnn.onnxsplit.artifacts.plan_file import read_plan

    return read_plan(folder)


_VERTICAL_ONLY = ("cut, objective, trace, percentile, bandwidth_range and adaptive choose a vertical split's cut: drop "
                  "them with strategy='tiles'")


def partition(model: str | Path, out: str | Path, *, input_shapes: Shapes = None, strategy: str = "vertical",
              device: str = "rockpro64", server: str = "cloud-cpu", link: str | None = None,
              bandwidth: str | float | None = None, rtt: str | float | None = None, objective: str = "latency",
              cut: str | Sequence[str] | None = None, max_device_share: float | None = None,
              max_transfer_bytes: int | None = None, trace: str | Path | None = None, percentile: float | None = None,
              bandwidth_range: str | None = None, adaptive: bool = False, codec: str = "none",
              calibration: str | Path | None = None, preprocess: str | None = None,
              max_output_change: str | None = None, reply_codec: str = "none", nodes: int = 2,
              node_profile: str = "rockpro64", grid: tuple[int, int] | None = None, stacks: int | None = None,
              fuse_until: str | None = None, reuse: bool = False, fc_split: str = "time",
              cluster_link: str | float = "1Gbit", ort_format: bool = True, atol: float = 1e-4,
              rtol: float = 1e-3, machines: str | Path | None = None) -> PlanFile:
    """Plan, write and verify a split of `model` into the folder `out`, and return the plan written: what
    `splitnn partition` does, each of its options a keyword here.

    strategy "vertical": the best cut between `device` and `server` over `link` (a built-in name; `bandwidth`
    and `rtt` override it or make a custom one) by `objective` ("latency", "throughput", "energy"), or the
    cut that sends the tensors `cut` ("a,b" or a sequence), within `max_device_share` of the MACs and
    `max_transfer_bytes`. Over a link that moves: `trace` (a time_s,mbps CSV; `percentile` for a figure other
    than the mean) or `bandwidth_range` ("0.1Mbit-50Mbit"); `adaptive` writes every cut best somewhere in it.
    `codec` ("auto", "int8+lossless", "jpeg:90", ...) and `reply_codec` say how the tensors travel, measured on
    `calibration` (a .npz, .npy or folder of images, `preprocess` "imagenet" or "scale=1/255,...") within
    `max_output_change` ("agreement>=0.99"). The device part is also written in onnxruntime's mobile format
    unless `ort_format` is False.
    strategy "tiles": the first layers split into a `grid` of tiles (None: the best predicted) in `stacks`
    fused stacks up to `fuse_until` (None: the best) on `nodes` nodes of `node_profile`, joined to the client
    by `cluster_link` (bits per second, or text: "1Gbit"; a bare number in text is Mbit/s); `reuse` computes
    each overlap once.
    `machines` (a machines file: `docs/pipeline.md`): stages over its machines in a pipeline, chosen by
    `objective` ("latency" or "throughput"), one folder per stage; `strategy` is then "pipeline".
    The written parts are checked against the model within `atol`/`rtol` before the folder is published.

    >>> plan = splitnn.partition("vgg16.onnx", "out/vgg16", device="raspberry-pi-4", link="3g")  # doctest: +SKIP
    >>> plan.cut.tensors, plan.predicted.total_s  # doctest: +SKIP
    """
    from splitnn.onnxsplit.jobs.choices import CutChoice, TilePlanning, VerificationChoice, codec_choice, cut_choice
    from splitnn.onnxsplit.jobs.partition import PartitionJob, partition_model

    tiles, planning = TilePlanning(), None
    if machines is not None:
        strategy = _pipeline_strategy(strategy, (link, bandwidth, rtt, max_device_share, max_transfer_bytes))
    if strategy == "tiles":
        tiles = TilePlanning(nodes, grid, fuse_until, node_profile, reuse, stacks, fc_split, _bps(cluster_link))
    elif strategy == "vertical":
        planning = planning_inputs(device, server, link, _bps(bandwidth), _seconds(rtt), max_device_share,
                                   max_transfer_bytes)
    forced = ",".join(cut) if cut is not None and not isinstance(cut, str) else cut
    if strategy == "tiles" and any(v not in (None, False, "latency") for v in (forced, objective, trace, percentile,
                                                                              bandwidth_range, adaptive)):
        raise SplitnnError(_VERTICAL_ONLY)
    choice = cut_choice(objective, forced, trace, percentile, bandwidth_range, adaptive) if strategy != "tiles" \
        else CutChoice()
    job = PartitionJob(strategy, planning, choice, codec_choice(codec, calibration, preprocess, max_output_change,
                                                                reply_codec), VerificationChoice(atol, rtol, ort_format),
                       tiles, None if machines is None else str(machines))
    return partition_model(model, out, job, _shapes(input_shapes), _warning_hooks()).document


def _pipeline_strategy(strategy: str, link_options: tuple[Any, ...]) -> str:
    """"pipeline", where partition is given a machines file; the options that file replaces are refused."""
    if strategy == "tiles":
        raise SplitnnError("machines plans stages over the machines of a file: drop strategy='tiles'")
    if any(v is not None for v in link_options):
        raise SplitnnError("link, bandwidth, rtt, max_device_share and max_transfer_bytes apply to a split between "
                           "a device and a server: with machines the links are the file's [[link]] entries")
    return "pipeline"


def _warning_hooks() -> JobHooks:
    """The job's notes as Python warnings (the command line prints them): a codec not used, a codec measured on a
    random input, operators priced at 0 s."""
    from splitnn.onnxsplit.jobs.partition import JobHooks

    def planned(plan: Any) -> None:
        if plan.unpriced is not None:
            ops = ", ".join(f"{op} x{count}" for op, count in plan.unpriced.counts.items())
            _warn(f"no cost formula for {ops}: priced at 0 s, the prediction leaves out their work")

    return JobHooks(note=_warn, planned=planned)


def _warn(text: str) -> None:
    """A UserWarning attributed to the caller's line: the first frame outside the splitnn package."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("splitnn."):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"splitnn: {text}", stacklevel=level)


@overload
def _bps(value: str | float) -> float: ...
@overload
def _bps(value: None) -> None: ...
def _bps(value: str | float | None) -> float | None:
    """A bandwidth in bits per second, given as one or as text ("5.85Mbit"; a bare number in text is Mbit/s)."""
    from splitnn.onnxsplit.core.units import parse_bandwidth_bps

    return parse_bandwidth_bps(value) if isinstance(value, str) else None if value is None else float(value)


def _seconds(value: str | float | None) -> float | None:
    """A duration in seconds, given as one or as text ("40ms")."""
    from splitnn.onnxsplit.core.units import parse_duration_s

    return parse_duration_s(value) if isinstance(value, str) else value


def run_bench(folder: str | Path, *, requests: int = 20, images: int = 5, workers: int | None = None,
              link: str | None = None, bandwidth: str | float | None = None, rtt: str | float | None = None,
              jitter: str | float | None = None, loss: float = 0.0, trace: str | Path | None = None,
              outages: Sequence[str] = (), stream: bool = False, deadline: str | float | None = None,
              duration_s: float | None = None, compare_static: bool = False, scheduler: str | None = None,
              data_parallel: bool = False, emulate_nodes: bool = False, kill_stage: str | None = None,
              failover: bool = False, baselines: bool = True, time_scale: float | None = None
              ) -> SplitBenchReport | AdaptiveBenchReport | TileBenchReport | PipelineBenchReport:
    """Run the plan in `folder` on this machine and measure it against its prediction: what `splitnn run-bench`
    does, by the plan's kind.

    A vertical split: the device and server parts as two processes over an emulated link (the plan's own, or
    the built-in `link`; `bandwidth`, `rtt`, `jitter`, `loss`, a bandwidth `trace` (time_s,mbps CSV) and
    `outages` ("2-4.5" seconds) change it), `requests` requests, pipelined too with `stream`; returns a
    SplitBenchReport (`stages`, `predicted_s`). An adaptive plan: its device switching cuts as the link moves
    (give a `trace`), every answer within `deadline` where given, for `requests` requests or `duration_s`
    seconds, beside each kept cut held with `compare_static`; returns an AdaptiveBenchReport. A tile plan: its
    tiles on an embedded Dask cluster (or `scheduler`'s) of 1..`workers` workers (default the plan's nodes),
    `images` images each, or whole images spread with `data_parallel`, each node held to the plan's predicted
    times on its node profile with `emulate_nodes`; returns a TileBenchReport (`scaling`, `outputs_match`); a
    script that runs one must do so under `if __name__ == "__main__":` (Dask's workers are new
    Python processes that import it). A pipeline plan: a process per stage held to its machine's time, each link
    emulated, `requests` one at a time, streamed with `stream`, `kill_stage` killed mid-stream (`failover`: the
    source answers alone after it), every time dilated by `time_scale`; returns a PipelineBenchReport. Any plan's
    baselines are left out with `baselines=False`. An option that does not apply to the plan's kind is refused.

    >>> report = splitnn.run_bench("out/vgg16", requests=5)  # doctest: +SKIP
    >>> report.stages["e2e_s"].p50, report.predicted_s  # doctest: +SKIP
    """
    from splitnn.cost_models.link_traces import read_trace
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy
    from splitnn.onnxsplit.jobs import bench as jobs

    kind = plan_strategy(folder)
    emulated = jobs.LinkEmulation(link, _bps(bandwidth), _seconds(rtt), _seconds(jitter) or 0.0, loss,
                                  jobs.outage_windows(outages), tuple(read_trace(str(trace))) if trace else ())
    bench = jobs.BenchChoice(requests, baselines=baselines, stream=stream, deadline_s=_seconds(deadline),
                             duration_s=duration_s, compare_static=compare_static, kill_stage=kill_stage,
                             failover=failover, time_scale=time_scale)
    if kind == "tiles":
        from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench

        jobs.refuse_on_tiles(emulated, bench)
        return run_tile_bench(folder, TileBenchOptions(workers=workers, images=images, scheduler=scheduler,
                                                      data_parallel=data_parallel, emulate_nodes=emulate_nodes))
    if workers is not None or scheduler is not None or data_parallel or emulate_nodes:
        raise SplitnnError("workers, scheduler, data_parallel and emulate_nodes apply to tile plans (strategy='tiles')")
    if kind == "pipeline":
        return jobs.bench_pipeline(folder, emulated, bench)
    if kind == "adaptive":
        if stream:
            raise SplitnnError("stream pipelines a split's frames; an adaptive plan's device sends one at a time")
        return jobs.bench_adaptive(folder, emulated, bench)
    return jobs.bench_split(folder, emulated, bench)


def serve(folder: str | Path, *, host: str = "127.0.0.1", port: int = 0, token: bytes | None = None) -> ModelServer:
    """Serve the server part of the split in `folder` on a background thread, and return the running server
    (`.address` is where it listens; `.close()`, or use it in a `with` block). `token`: devices must prove they
    hold it (as `splitnn serve --token-file`). `splitnn serve` adds TLS, limits and draining on SIGTERM.

    >>> with splitnn.serve("out/vgg16") as server:  # doctest: +SKIP
    ...     answer = splitnn.device("out/vgg16", server.address).request(feeds)
    """
    from splitnn.onnxsplit.runtime.server import ModelServer, models_to_serve

    models_to_serve(folder)  # refuses a plan whose server part is empty
    return ModelServer.from_plan(folder, host=host, port=port, token=token, spin=False).start()


def device(folder: str | Path, server: str | tuple[str, int], *, token: bytes | None = None,
           timeout_s: float = 30.0, name: str | None = None) -> DeviceClient:
    """The device side of the split in `folder`, talking to `server` ("host:port" or (host, port)):
    `.request(feeds)` runs the device part, sends what crosses the cut and returns a RequestResult (`.outputs`,
    `.ok`, each stage's seconds); `.close()` ends the connection.

    >>> result = splitnn.device("out/vgg16", "192.168.1.20:9000").request({"input": image})  # doctest: +SKIP
    """
    from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, parse_address

    address = parse_address(server) if isinstance(server, str) else server
    return DeviceClient(DevicePart(folder), address, token=token, timeout_s=timeout_s, name=name)

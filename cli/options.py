"""Option groups shared by the commands (Polygraphy's argument groups).

A group declares its options and parses them into one typed value; a command
lists the groups it uses with `@use_groups(...)` and receives one parameter
per group. Parsing (units, files, checks between options) happens inside the
command's call, so a mistake is one SplitnnError line and exit code 2.
Heavy modules are imported inside the parsers, so `--help` stays instant.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from splitnn.onnxsplit.jobs.bench import BenchChoice, LinkEmulation, SweepChoice
    from splitnn.onnxsplit.jobs.choices import CodecChoice, CutChoice, PlanningInputs, TilePlanning, VerificationChoice

LINKS = ("cat1", "3g", "4g", "wifi")


@dataclass(frozen=True)
class OptionGroup:
    """Options (click.option arguments, each naming its parameter) and the parser that turns them into one value."""

    dest: str
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    parse: Callable[..., Any]

    @property
    def params(self) -> list[str]:
        return [decls[-1] for decls, _ in self.options]


def use_groups(*groups: OptionGroup) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add each group's options to a command; the command gets `dest=group.parse(**its options)` instead."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            for group in groups:
                kwargs[group.dest] = group.parse(**{name: kwargs.pop(name) for name in group.params})
            return func(**kwargs)

        for group in reversed(groups):
            for decls, attrs in reversed(group.options):
                command = click.option(*decls, **attrs)(command)
        return command

    return wrap


def input_shape_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="[NAME:]DIMS",
        help="Fix an input's shape, e.g. x:1x3x224x224 (repeat per input; a bare 1x3x224x224 for a one-input model).",
    )(func)


# ---- planning a vertical split (partition) -------------------------------------------------------------------

@dataclass(frozen=True)
class PlanningChoice:
    """The planning options as given; `load()` reads the profiles (only a vertical split needs them)."""

    device: str
    server: str
    link: str | None
    bandwidth_bps: float | None
    rtt_s: float | None
    max_device_share: float | None
    max_transfer_bytes: int | None

    def load(self) -> PlanningInputs:
        from splitnn.onnxsplit.jobs.choices import planning_inputs

        return planning_inputs(self.device, self.server, self.link, self.bandwidth_bps, self.rtt_s,
                               self.max_device_share, self.max_transfer_bytes)


def _bandwidth_bps(text: str | None) -> float | None:
    """--bandwidth in bits per second; a bare number is Mbit/s, and the user is told so."""
    from splitnn.onnxsplit.core.units import parse_bandwidth_bps

    if text is None:
        return None
    _say_unit(text, "--bandwidth", "Mbit/s")
    return parse_bandwidth_bps(text)


def duration_option_s(text: str | None, option: str) -> float | None:
    """A duration option's value in seconds (for commands that take one option outside the groups here)."""
    return _seconds(text, option)


def _seconds(text: str | None, option: str) -> float | None:
    """A duration option in seconds; a bare number is milliseconds, and the user is told so."""
    from splitnn.onnxsplit.core.units import parse_duration_s

    if text is None:
        return None
    _say_unit(text, option, "ms")
    return parse_duration_s(text)


def _say_unit(text: str, option: str, unit: str) -> None:
    if text.strip().replace(".", "", 1).isdigit():
        from splitnn.cli.render import stderr

        stderr().print(f"note: {option} {text} taken as {text} {unit}")


def _planning_choice(device: str, server: str, link: str | None, bandwidth: str | None, rtt: str | None,
                     max_device_share: float | None, max_transfer_bytes: str | None) -> PlanningChoice:
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.core.units import parse_bandwidth_bps, parse_bytes, parse_duration_s

    bandwidth_bps = parse_bandwidth_bps(bandwidth) if bandwidth else None
    rtt_s = parse_duration_s(rtt) if rtt else None
    if bandwidth is not None and link is None and rtt is None:
        raise SplitnnError("--bandwidth without --link needs --rtt (e.g. --rtt 40ms): the round trip counts as much "
                           "as the rate; or start from a preset: --link 4g --bandwidth ...")
    if bandwidth:
        _say_unit(bandwidth, "--bandwidth", "Mbit/s")
    if rtt:
        _say_unit(rtt, "--rtt", "ms")
    return PlanningChoice(device, server, link, bandwidth_bps, rtt_s, max_device_share,
                          parse_bytes(max_transfer_bytes) if max_transfer_bytes else None)


_PROFILE_HELP = "Device profile: rockpro64, raspberry-pi-4, cloud-cpu, host, or a .toml file."
PLANNING = OptionGroup("planning", (
    (("--device", "device"), dict(default="rockpro64", show_default=True, help=_PROFILE_HELP)),
    (("--server", "server"), dict(default="cloud-cpu", show_default=True, help="Server profile (same choices as --device).")),
    (("--link", "link"), dict(type=click.Choice(LINKS), help="A built-in uplink (default 4g unless --bandwidth is given).")),
    (("--bandwidth", "bandwidth"), dict(help="Uplink bandwidth, e.g. 5.85Mbit (overrides the link's).")),
    (("--rtt", "rtt"), dict(help="Round-trip time, e.g. 40ms (overrides the link's).")),
    (("--max-device-share", "max_device_share"), dict(type=click.FloatRange(0, 1),
                                                      help="Largest fraction of the model's MACs allowed on the device.")),
    (("--max-transfer-bytes", "max_transfer_bytes"), dict(help="Largest transfer allowed, e.g. 200kB.")),
), _planning_choice)


def _cut_choice(objective: str, cut_tensors: str | None, trace: str | None, percentile: float | None,
                bandwidth_range: str | None, adaptive: bool) -> CutChoice:
    from splitnn.onnxsplit.jobs.choices import cut_choice

    return cut_choice(objective, cut_tensors, trace, percentile, bandwidth_range, adaptive)


CUT_CHOICE = OptionGroup("choice", (
    (("--objective", "objective"), dict(type=click.Choice(["latency", "throughput", "energy"]), default="latency",
                                        show_default=True)),
    (("--cut", "cut_tensors"), dict(metavar="TENSOR[,TENSOR...]",
                                    help="Take the cut that sends exactly these tensors instead of choosing.")),
    (("--trace", "trace"), dict(type=click.Path(dir_okay=False), metavar="FILE.csv",
                                help="Choose the one cut with the best mean latency over this bandwidth trace "
                                     "(time_s,mbps rows; the link's RTT and its up/down ratio are kept).")),
    (("--percentile", "percentile"), dict(type=click.FloatRange(0, 100, min_open=True),
                                          help="With --trace: the best at this percentile of latency (e.g. 95) "
                                               "instead of the mean.")),
    (("--bandwidth-range", "bandwidth_range"), dict(metavar="LOW-HIGH",
                                                    help="Also list the cuts that are best somewhere in this range "
                                                         "of uplink rates, e.g. 0.1Mbit-50Mbit (with --trace: the "
                                                         "trace's lowest to highest rate).")),
    (("--adaptive", "adaptive"), dict(is_flag=True, help="Write every cut that is best somewhere in "
                                                          "--bandwidth-range (or --trace's rates); the device "
                                                          "switches between them as the link moves.")),
), _cut_choice)


def _codec_choice(codec: str, calibration: str | None, preprocess: str | None, max_output_change: str | None,
                  reply_codec: str, plot: str | None) -> CodecChoice:
    from splitnn.onnxsplit.jobs.choices import codec_choice

    return codec_choice(codec, calibration, preprocess, max_output_change, reply_codec, plot)


CODEC_CHOICE = OptionGroup("codec", (
    (("--codec", "codec"), dict(default="none", show_default=True, metavar="CODEC",
                                help="How the cut's tensors travel: auto (the cut and the codec chosen together, "
                                     "on measured bytes, within --max-output-change; default bound agreement>=0.99 "
                                     "for a classifier, else relerr<=0.01), none, fp16, int8, int8:channel, int8:calibrated "
                                     "(ranges from --calibration, kept in plan.json), lossless, or a lossy one "
                                     "followed by +lossless (e.g. int8+lossless); or jpeg:Q, webp:Q[:M], png: the "
                                     "model's input as an image file, everything else on the server (the plain "
                                     "baseline; range from --calibration; M: WebP's effort, 0 fastest to 6 "
                                     "smallest, default 4). Its bytes and its effect on the "
                                     "outputs are measured on --calibration, else on the verification input.")),
    (("--calibration", "calibration"), dict(type=click.Path(), metavar="PATH",
                                            help="Your inputs, to measure the codec on: a .npz (one array per model "
                                                 "input, samples on a new first axis), a .npy (one input), or a "
                                                 "folder of images (see --preprocess).")),
    (("--preprocess", "preprocess"), dict(metavar="SPEC",
                                          help="How images become the input, e.g. 'scale=1/255,mean=0.5,std=0.5,"
                                               "layout=nchw,color=rgb', or 'imagenet' (scale 1/255, ImageNet's mean "
                                               "and std) (defaults: scale=1/255, mean 0, std 1, the input's layout, "
                                               "RGB); resized to the input's height and width.")),
    (("--max-output-change", "max_output_change"), dict(metavar="BOUND",
                                                        help="Refuse a codec that changes the outputs more: "
                                                             "agreement>=0.99 (top-1 of a classifier), "
                                                             "relerr<=0.01 or abserr<=0.05.")),
    (("--reply-codec", "reply_codec"), dict(default="none", show_default=True, metavar="CODEC",
                                            help="How the server's answer travels back: auto (the one "
                                                 "predicted back soonest within --max-output-change), none, fp16, "
                                                 "int8, int8:channel, lossless, or one of them +lossless (e.g. "
                                                 "fp16+lossless); measured like --codec, on the server part's "
                                                 "outputs, and priced in the prediction.")),
    (("--plot", "plot"), dict(type=click.Path(dir_okay=False), metavar="FILE.png",
                              help="With --codec auto: draw every pair priced, its request bytes against its "
                                   "predicted latency, by verdict (needs matplotlib).")),
), _codec_choice)


def _verification_choice(no_ort: bool, atol: float, rtol: float) -> VerificationChoice:
    from splitnn.onnxsplit.jobs.choices import VerificationChoice

    return VerificationChoice(atol, rtol, not no_ort)


VERIFICATION = OptionGroup("verification", (
    (("--no-ort", "no_ort"), dict(is_flag=True, help="Skip the ORT-format (mobile) copy of the device part.")),
    (("--atol", "atol"), dict(default=1e-4, show_default=True, help="Verification: absolute tolerance.")),
    (("--rtol", "rtol"), dict(default=1e-3, show_default=True, help="Verification: relative tolerance.")),
), _verification_choice)


def _tile_planning(nodes: int, grid: str, fuse_until: str, stacks: str, fc_split: str, node_profile: str,
                   cluster_link: str, reuse: bool) -> TilePlanning:
    from splitnn.onnxsplit.jobs.choices import tile_planning

    _say_unit(cluster_link, "--cluster-link", "Mbit/s")
    return tile_planning(nodes, grid, fuse_until, stacks, fc_split, node_profile, cluster_link, reuse)


TILE_PLANNING = OptionGroup("tiles", (
    (("--nodes", "nodes"), dict(type=click.IntRange(1), default=2, show_default=True, help="Tiles: how many nodes run the tiles.")),
    (("--grid", "grid"), dict(default="auto", show_default=True, metavar="RxC|auto",
                              help="Tiles: the grid, e.g. 3x3 (auto: best predicted).")),
    (("--fuse-until", "fuse_until"), dict(default="auto", show_default=True, metavar="TENSOR|auto",
                                          help="Tiles: the last tensor tiled (of the last stack).")),
    (("--stacks", "stacks"), dict(default="auto", show_default=True, metavar="N|auto",
                                  help="Tiles: fused stacks in sequence, each tiled in its own grid and stitched "
                                       "before the next (auto: best predicted).")),
    (("--fc-split", "fc_split"), dict(type=click.Choice(["time", "memory"]), default="time", show_default=True,
                                      help="Tiles: split a fully connected layer by output neurons across the nodes "
                                           "where that is predicted faster (time), or only where it does not fit a "
                                           "node (memory).")),
    (("--node-profile", "node_profile"), dict(default="rockpro64", show_default=True, help="Tiles: the profile of every node (a built-in name, a .toml, host, or host-1thread: this "
                                                   "machine on one onnxruntime thread, as a Dask worker runs tiles).")),
    (("--cluster-link", "cluster_link"), dict(default="1Gbit", show_default=True, metavar="BANDWIDTH",
                                              help="Tiles: the link between the client and the nodes, which every "
                                                   "tile's crops and outputs cross, e.g. 100Mbit.")),
    (("--reuse", "reuse"), dict(is_flag=True, help="Tiles: compute each overlap once (checkerboard reuse) instead of in both tiles, within each stack.")),
), _tile_planning)


# ---- run-bench ------------------------------------------------------------------------------------------------

def _link_choice(link: str | None, bandwidth: str | None, rtt: str | None, jitter: str | None, loss: float,
                 trace: str | None, outages: tuple[str, ...]) -> LinkEmulation:
    from splitnn.cost_models.link_traces import read_trace
    from splitnn.onnxsplit.jobs.bench import LinkEmulation, outage_windows

    return LinkEmulation(link, _bandwidth_bps(bandwidth), _seconds(rtt, "--rtt"), _seconds(jitter, "--jitter") or 0.0,
                         loss, outage_windows(outages), tuple(read_trace(trace)) if trace else ())


LINK_EMULATION = OptionGroup("link", (
    (("--link", "link"), dict(type=click.Choice(LINKS), help="A built-in link (default: the plan's; 4g with --sweep).")),
    (("--bandwidth", "bandwidth"), dict(help="Bandwidth each way, e.g. 5.85Mbit (overrides the link's).")),
    (("--rtt", "rtt"), dict(help="Round trip, e.g. 50ms (overrides the link's).")),
    (("--jitter", "jitter"), dict(help="Jitter of each one-way delay, e.g. 5ms.")),
    (("--loss", "loss"), dict(type=click.FloatRange(0, 1, max_open=True), default=0.0,
                              help="Probability that a packet stalls one RTO (200 ms).")),
    (("--trace", "trace"), dict(type=click.Path(dir_okay=False), help="Bandwidth trace, CSV of time_s,mbps.")),
    (("--outage", "outages"), dict(multiple=True, metavar="START-END", help="Link down from START to END seconds, e.g. 2-4.5.")),
), _link_choice)


def _bench_choice(requests: int, device_slowdown: str, timeout: float, no_baselines: bool, stream: bool,
                  fps: float | None, deadline: str | None, duration: float | None,
                  compare_static: bool, tls: bool, kill_stage: str | None, failover: bool,
                  time_scale: float | None) -> BenchChoice:
    from splitnn.onnxsplit.jobs.bench import BenchChoice

    return BenchChoice(requests, _slowdown(device_slowdown), timeout, not no_baselines, stream, fps,
                       _seconds(deadline, "--deadline"), duration, compare_static, tls, kill_stage, failover,
                       time_scale)


def _slowdown(text: str) -> float | None:
    """None for auto (from the profiles), else the factor K given."""
    from splitnn.onnxsplit.core.errors import SplitnnError

    if text == "auto":
        return None
    try:
        factor = float(text)
    except ValueError:
        raise SplitnnError(f"--device-slowdown '{text}' must be a number K >= 1 or auto") from None
    return factor


BENCH = OptionGroup("bench", (
    (("--requests", "requests"), dict(default=20, show_default=True, type=click.IntRange(1),
                                      help="Timed requests (per cut with --sweep).")),
    (("--device-slowdown", "device_slowdown"), dict(
        default="auto", show_default=True,
        help="Emulate the board: auto makes each part (and the all-on-device baseline) take what the device "
             "profile predicts for it; K dilates this host's time by K instead (1: none).")),
    (("--timeout", "timeout"), dict(default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
                                    help="Seconds to wait for each answer.")),
    (("--no-baselines", "no_baselines"), dict(is_flag=True, help="Skip the baseline runs: all on the device and all on the server (a split), or the best two-machine plan and the source alone (a pipeline plan).")),
    (("--stream", "stream"), dict(is_flag=True, help="Also pipeline the frames (the device computes frame i+1 while "
                                                     "the server works on frame i).")),
    (("--fps", "fps"), dict(type=click.FloatRange(0, min_open=True),
                            help="With --stream: frames offered per second (default: as fast as the device goes).")),
    (("--deadline", "deadline"), dict(metavar="TIME", help="Adaptive plans: answer every request within TIME (e.g. "
                                                           "160ms), on the device alone when the link cannot.")),
    (("--duration", "duration"), dict(type=click.FloatRange(0, min_open=True), metavar="SECONDS",
                                      help="Adaptive plans: run for this long (e.g. a trace's length) instead of "
                                           "--requests.")),
    (("--compare-static", "compare_static"), dict(is_flag=True, help="Adaptive plans: replay the same link with "
                                                                     "each kept cut held fixed, beside the adaptive run.")),
    (("--tls", "tls"), dict(is_flag=True, help="Encrypt the split's connection with TLS (a self-signed pair made for "
                                              "the run), to measure what it costs.")),
    (("--kill-stage", "kill_stage"), dict(metavar="MACHINE", help=(
        "Pipeline plans, with --stream: kill that machine's stage process once half the stream is answered; every "
        "request is then counted as answered or failed."))),
    (("--failover", "failover"), dict(is_flag=True, help=(
        "Pipeline plans, with --kill-stage: after the stage drops, the model is planned again over the machines "
        "left and the rest of the stream goes through them (the source answers alone meanwhile where the model "
        "fits it; the original model is needed)."))),
    (("--time-scale", "time_scale"), dict(type=float, metavar="K", help=(
        "Pipeline plans: dilate every time of the run by K >= 1 (each stage held to K times its machine's "
        "predicted time, each link K times slower and longer), for a host slower than a machine of the plan; "
        "the figures are divided back by K."))),
), _bench_choice)


def _sweep_choice(sweep: bool, top: int | None, rounds: int | None, input_shapes: tuple[str, ...],
                  device_name: str | None, server_name: str | None, objective: str | None,
                  max_device_share: float | None, max_transfer_bytes: str | None, codec: str | None,
                  reply_codec: str | None) -> SweepChoice | None:
    from splitnn.onnxsplit.codecs.specs import canonical_codec
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.core.units import parse_bytes

    if not sweep:
        sweep_only = {"--top": top, "--rounds": rounds, "--input-shape": input_shapes or None, "--device": device_name,
                      "--server": server_name, "--objective": objective, "--max-device-share": max_device_share,
                      "--max-transfer-bytes": max_transfer_bytes, "--codec": codec, "--reply-codec": reply_codec}
        given = [k for k, v in sweep_only.items() if v is not None]
        if given:
            raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --sweep (a plan "
                               "in OUTDIR has its own): add --sweep and give a model")
        return None
    from splitnn.onnxsplit.jobs.bench import SweepChoice
    from splitnn.onnxsplit.jobs.choices import reply_spec
    from splitnn.onnxsplit.model.input_shapes import parse_input_shapes

    return SweepChoice(top, rounds or 2, parse_input_shapes(input_shapes), device_name or "rockpro64",
                       server_name or "host", objective or "latency", max_device_share,
                       parse_bytes(max_transfer_bytes) if max_transfer_bytes else None,
                       canonical_codec(codec) if codec else "none", reply_spec(reply_codec or "none"))


SWEEP = OptionGroup("sweep", (
    (("--sweep", "sweep"), dict(is_flag=True, help="TARGET is a model: measure its feasible cuts and the planner's regret.")),
    (("--top", "top"), dict(type=click.IntRange(1),
                            help="With --sweep: measure only the K best cuts by prediction (and the chosen one).")),
    (("--rounds", "rounds"), dict(type=click.IntRange(1),
                                  help="With --sweep: visit every cut this many times, sharing --requests (default 2).")),
    (("--input-shape", "input_shapes"), dict(multiple=True, metavar="[NAME:]DIMS",
                                             help="With --sweep: fix an input's shape, e.g. x:1x3x224x224.")),
    (("--device", "device_name"), dict(help="With --sweep: device profile (default rockpro64).")),
    (("--server", "server_name"), dict(help="With --sweep: server profile (default host: the sweep's server is this machine).")),
    (("--objective", "objective"), dict(type=click.Choice(["latency", "throughput"]),
                                        help="With --sweep: what to plan and measure (default latency).")),
    (("--max-device-share", "max_device_share"), dict(type=click.FloatRange(0, 1), help="With --sweep: as in partition.")),
    (("--max-transfer-bytes", "max_transfer_bytes"), dict(help="With --sweep: as in partition.")),
    (("--codec", "codec"), dict(metavar="CODEC", help="With --sweep: send every cut's tensors in this codec and predict "
                                                      "each cut at its measured bytes (fp16, int8, int8:channel, "
                                                      "lossless, or one of them +lossless).")),
    (("--reply-codec", "reply_codec"), dict(metavar="CODEC", help="With --sweep: every cut's answers in this codec "
                                                                  "(auto, or one --codec takes), priced and measured.")),
), _sweep_choice)


def _strategy(strategy: str, machines: str | None) -> tuple[str, str | None]:
    """partition's strategy, "pipeline" with a machines file; and the file."""
    from splitnn.onnxsplit.core.errors import SplitnnError

    if machines is None:
        return strategy, None
    if strategy == "tiles":
        raise SplitnnError("--machines plans stages over the machines of a file: drop --strategy tiles")
    return "pipeline", machines


STRATEGY = OptionGroup("strategy_and_machines", (
    (("--strategy", "strategy"), dict(type=click.Choice(["vertical", "tiles"]), default="vertical", show_default=True,
                                      help="vertical: device + server; tiles: the first layers split into tiles "
                                           "across a cluster.")),
    (("--machines", "machines"), dict(type=click.Path(dir_okay=False), metavar="FILE.toml", help=(
        "Plan stages over the machines and links of this file (a pipeline of N machines; see docs/pipeline.md); "
        "--objective latency or throughput."))),
), _strategy)


@dataclass(frozen=True)
class TileBenchChoice:
    workers: int | None
    scheduler: str | None
    data_parallel: bool
    images: int
    scaling: bool
    kill_worker_after_s: float | None
    given: tuple[str, ...]  # the tile-only options the user set (refused on a vertical split)
    handoff: str = "client"
    emulate_nodes: bool = False

    def options(self):
        """The tile bench's options (imported only for a tile plan: a vertical split never loads the Dask code)."""
        from splitnn.onnxsplit.measure.tiles import TileBenchOptions

        return TileBenchOptions(workers=self.workers, scheduler=self.scheduler, images=self.images,
                                scaling=self.scaling, data_parallel=self.data_parallel,
                                kill_worker_after_s=self.kill_worker_after_s, handoff=self.handoff,
                                emulate_nodes=self.emulate_nodes)


def _tile_bench_choice(workers: int | None, scheduler: str | None, data_parallel: bool, images: int,
                       no_scaling: bool, kill_worker_after: float | None, handoff: str | None,
                       emulate_nodes: bool) -> TileBenchChoice:
    tile_only = {"--workers": workers, "--scheduler": scheduler, "--data-parallel": data_parallel or None,
                 "--no-scaling": no_scaling or None, "--kill-worker-after": kill_worker_after, "--handoff": handoff,
                 "--emulate-nodes": emulate_nodes or None}
    return TileBenchChoice(workers, scheduler, data_parallel, images, not no_scaling, kill_worker_after,
                           tuple(k for k, v in tile_only.items() if v is not None), handoff or "client", emulate_nodes)


TILE_BENCH = OptionGroup("tiles", (
    (("--workers", "workers"), dict(type=click.IntRange(1), help="Tile plans: Dask workers (default: the plan's --nodes).")),
    (("--scheduler", "scheduler"), dict(metavar="tcp://HOST:8786",
                                        help="Tile plans: an existing Dask scheduler (default: an embedded local cluster).")),
    (("--data-parallel", "data_parallel"), dict(is_flag=True,
                                                help="Tile plans: spread whole images over the workers instead of tiles.")),
    (("--images", "images"), dict(type=click.IntRange(1), default=5, show_default=True,
                                  help="Tile plans: timed images per worker count.")),
    (("--no-scaling", "no_scaling"), dict(is_flag=True, help="Tile plans: time only the full worker count, not 1..N.")),
    (("--kill-worker-after", "kill_worker_after"), dict(
        type=click.FloatRange(0), metavar="S", help="Tile plans, fault drill: kill one worker S seconds after the first "
                                                    "tile of the first timed image is back (0: at once, while the other "
                                                    "tiles are out).")),
    (("--handoff", "handoff"), dict(type=click.Choice(["workers", "client"]), help=(
        "Tile plans of several stacks: how a stack's tiles get the maps of the stacks before it; client (default): "
        "stitched on the client and sent out again; workers: left on the workers and handed over by Dask (a "
        "squeeze-and-excitation vector from the workers' sums of the map; not with --reuse)."))),
    (("--emulate-nodes", "emulate_nodes"), dict(is_flag=True, help=(
        "Tile plans: hold every node to the time the plan predicts on its --node-profile (each tile on its worker, "
        "the remainder on the client), as the boards it plans for would take; the link stays this host's."))),
), _tile_bench_choice)


@dataclass(frozen=True)
class ReportChoice:
    plot: str | None
    as_json: bool


def _report_choice(plot: str | None, as_json: bool) -> ReportChoice:
    from splitnn.onnxsplit.core.errors import SplitnnError

    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise SplitnnError(f"--plot '{plot}' must name a .png file")
    return ReportChoice(plot, as_json)


REPORT = OptionGroup("report", (
    (("--plot", "plot"), dict(type=click.Path(dir_okay=False), metavar="FILE.png",
                              help="Draw stacked bars (device, transfer, server) per cut or per baseline; on an adaptive plan, "
                                   "latency over time above the link's rate, the estimate and the cut used.")),
    (("--json", "as_json"), dict(is_flag=True, help="Print the report as one JSON object.")),
), _report_choice)

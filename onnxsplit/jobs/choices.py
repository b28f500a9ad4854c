"""The options of a partition as typed records, each made from the text a user gives (the command line's flags,
the API's keywords), with one clear SplitnnError for a bad combination.

PlanningInputs: the profiles and limits a vertical split is planned with. CutChoice: how the cut is picked (an
objective, a forced cut, a trace, a range of rates, adaptive). CodecChoice: how the cut's tensors and the answer
travel, and what they are measured on. TilePlanning: a tile plan's nodes, grid, stacks and cluster link.
VerificationChoice: the tolerances the written parts are checked within.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.onnxsplit.artifacts.plan_file import Constraints
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.units import parse_bandwidth_bps


@dataclass(frozen=True)
class PlanningInputs:
    """The profiles and limits a vertical split is planned with."""

    device: DeviceProfile
    server: DeviceProfile
    link: LinkProfile
    constraints: Constraints


def planning_inputs(device: str, server: str, link: str | None, bandwidth_bps: float | None = None,
                    rtt_s: float | None = None, max_device_share: float | None = None,
                    max_transfer_bytes: int | None = None) -> PlanningInputs:
    """The device and server profiles by name, the link (a named one, else a custom one from `bandwidth_bps`,
    else 4G; `bandwidth_bps`/`rtt_s` override the named link's) and the constraints (the device's usable RAM)."""
    from splitnn.cost_models.catalog import load_device, load_link as load_named_link

    device_profile = load_device(device)
    the_link = load_named_link(link or (None if bandwidth_bps else "4g"), bandwidth_bps, rtt_s)
    constraints = Constraints(device_memory_bytes=device_profile.usable_ram_bytes, max_device_share=max_device_share,
                              max_transfer_bytes=max_transfer_bytes)
    return PlanningInputs(device_profile, load_device(server), the_link, constraints)


@dataclass(frozen=True)
class CutChoice:
    """How partition picks the cut: by an objective at the typical link, given by the user, or over a trace."""

    objective: str = "latency"
    forced: tuple[str, ...] | None = None  # the cut that sends exactly these tensors
    trace: Any = None  # the trace's (time_s, bits per second) steps, or None
    trace_name: str | None = None
    percentile: float | None = None
    bandwidth_range: tuple[float, float] | None = None  # (low, high) uplink bits per second
    adaptive: bool = False  # write every cut best somewhere in the range (vertical/adaptive.py)


def bandwidth_range(text: str) -> tuple[float, float]:
    """'LOW-HIGH' (e.g. 0.1Mbit-50Mbit) in bits per second."""
    low, sep, high = text.partition("-")
    if not sep:
        raise SplitnnError(f"--bandwidth-range '{text}' must be LOW-HIGH, e.g. 0.1Mbit-50Mbit")
    low_bps, high_bps = parse_bandwidth_bps(low), parse_bandwidth_bps(high)
    if not 0 < low_bps <= high_bps:
        raise SplitnnError(f"--bandwidth-range '{text}': the low end must be above 0 and not above the high end")
    return low_bps, high_bps


def cut_choice(objective: str = "latency", cut_tensors: str | None = None, trace: str | Path | None = None,
               percentile: float | None = None, rates: str | None = None, adaptive: bool = False) -> CutChoice:
    """A CutChoice from the options as given: `cut_tensors` "a,b", `trace` a time_s,mbps CSV file, `rates` the
    bandwidth range 'LOW-HIGH'."""
    from splitnn.cost_models.link_traces import read_trace

    if objective not in ("latency", "throughput", "energy"):
        raise SplitnnError(f"unknown objective '{objective}': use latency, throughput or energy")
    forced = tuple(t.strip() for t in cut_tensors.split(",") if t.strip()) if cut_tensors is not None else None
    if percentile is not None and trace is None:
        raise SplitnnError("--percentile is a figure over a trace: add --trace FILE.csv")
    if trace is not None and (forced is not None or objective != "latency"):
        raise SplitnnError("--trace picks the cut with the best latency over the trace: drop --cut and --objective")
    steps = read_trace(str(trace)) if trace else None
    known = [bps for _, bps in steps] if steps else []
    span = bandwidth_range(rates) if rates else (min(known), max(known)) if known else None
    if adaptive and (span is None or forced is not None or objective != "latency" or percentile is not None):
        raise SplitnnError("--adaptive keeps the cuts best for latency over a range: give --bandwidth-range LOW-HIGH "
                           "or --trace FILE.csv, and no --cut, --objective or --percentile")
    return CutChoice(objective, forced, None if adaptive else steps, str(trace) if trace else None, percentile, span,
                     adaptive)


@dataclass(frozen=True)
class CodecChoice:
    """How the cut's tensors travel, and what it is measured on (issue 14)."""

    spec: str = "none"  # a codec spec of onnxsplit/codecs ("none": plain .npy; "auto": chosen with the cut)
    calibration: str | None = None  # the user's inputs: a .npz, a .npy or a folder of images
    preprocess: Any = None  # onnxsplit.model.calibration.Preprocess for a folder of images, or None
    limit: Any = None  # vertical.codec_check.OutputChangeLimit, or None
    reply: str = "none"  # the codec the server answers in
    plot: str | None = None  # --plot FILE.png: --codec auto's pairs drawn (by the command line)


def codec_choice(codec: str = "none", calibration: str | Path | None = None, preprocess: str | None = None,
                 max_output_change: str | None = None, reply_codec: str = "none", plot: str | None = None
                 ) -> CodecChoice:
    """A CodecChoice from the options as given (specs as `--codec`, `--preprocess`, `--max-output-change` and
    `--reply-codec` take them)."""
    from splitnn.onnxsplit.codecs.specs import canonical_codec, needs_ranges
    from splitnn.onnxsplit.model.calibration import parse_preprocess
    from splitnn.onnxsplit.vertical.codec_check import parse_output_change

    spec = "auto" if codec.strip().lower() == "auto" else canonical_codec(codec)  # an unknown one is named here
    if needs_ranges(spec) and calibration is None:
        raise SplitnnError(f"{spec} takes each tensor's range from your inputs: add --calibration PATH")
    reply = reply_spec(reply_codec)
    if max_output_change is not None and spec == "none" and reply == "none":
        raise SplitnnError("--max-output-change bounds what a codec does to the outputs: add --codec or --reply-codec")
    if preprocess is not None and calibration is None:
        raise SplitnnError("--preprocess turns --calibration images into inputs: add --calibration FOLDER")
    if plot is not None and (spec != "auto" or Path(plot).suffix.lower() != ".png"):
        raise SplitnnError(f"--plot '{plot}' draws the pairs --codec auto prices: give --codec auto and a .png file")
    return CodecChoice(spec, str(calibration) if calibration is not None else None,
                       parse_preprocess(preprocess) if preprocess else None,
                       parse_output_change(max_output_change) if max_output_change else None, reply, plot)


def reply_spec(text: str) -> str:
    """A --reply-codec spec: auto, or a codec whose frames describe themselves, in its canonical name."""
    from splitnn.onnxsplit.codecs.specs import canonical_codec, require_self_describing

    if text.strip().lower() == "auto":
        return "auto"
    require_self_describing(text, "--reply-codec")  # (image and calibrated codecs need ranges: refused)
    return canonical_codec(text)


@dataclass(frozen=True)
class VerificationChoice:
    """What the written parts are checked within, and whether the device part is also written in ORT format."""

    atol: float = 1e-4
    rtol: float = 1e-3
    ort_format: bool = True


@dataclass(frozen=True)
class TilePlanning:
    """A tile plan's options (None: chosen by the planner)."""

    nodes: int = 2
    grid: tuple[int, int] | None = None
    fuse_until: str | None = None
    node_profile: str = "rockpro64"
    reuse: bool = False
    stacks: int | None = None
    fc_split: str = "time"
    cluster_link_bps: float = 1e9


def tile_planning(nodes: int = 2, grid: str = "auto", fuse_until: str = "auto", stacks: str = "auto",
                  fc_split: str = "time", node_profile: str = "rockpro64", cluster_link: str = "1Gbit",
                  reuse: bool = False) -> TilePlanning:
    """A TilePlanning from the options as given (`grid` "RxC" or "auto", `stacks` a count or "auto",
    `cluster_link` a bandwidth: "1Gbit"; a bare number is Mbit/s)."""
    shape = None
    if grid != "auto":
        rows, _, cols = grid.lower().partition("x")
        if not (rows.isdigit() and cols.isdigit() and int(rows) > 0 and int(cols) > 0):
            raise SplitnnError(f"--grid '{grid}' must be RxC, e.g. 3x3, or auto")
        shape = (int(rows), int(cols))
    count = None
    if stacks != "auto":
        if not stacks.isdigit() or int(stacks) < 1:
            raise SplitnnError(f"--stacks '{stacks}' must be a whole number of stacks (1 or more), or auto")
        count = int(stacks)
    return TilePlanning(nodes, shape, None if fuse_until == "auto" else fuse_until, node_profile, reuse, count, fc_split,
                        parse_bandwidth_bps(cluster_link))

"""What `run-bench` reports for a vertical split: typed records, `to_dict()` for --json (the keys as documented).

Times are seconds and rates frames per second, as the field names say;
`stages` and `samples` are keyed by stage (device_s, encode_s, transfer_s,
server_s, e2e_s).
"""
from __future__ import annotations

from dataclasses import dataclass

from splitnn.cost_models.prediction import Prediction
from splitnn.onnxsplit.artifacts.plan_file import CutRecord
from splitnn.onnxsplit.measure.emulated_board import Calibration
from splitnn.onnxsplit.measure.run_prediction import RunPrediction
from splitnn.onnxsplit.core.records import Record


@dataclass(frozen=True)
class Percentiles(Record):
    p50: float
    p95: float


@dataclass(frozen=True)
class BytesPerRequest(Record):
    up: int
    down: int


@dataclass(frozen=True)
class LinkReport(Record):
    description: str
    uplink_bps: float | None
    downlink_bps: float | None
    rtt_s: float
    jitter_s: float
    loss: float
    stalls: int  # loss stalls the relay inserted


@dataclass(frozen=True)
class SlowdownReport(Record):
    """How the board's compute was emulated on this host (see measure/emulated_board.py)."""

    factor: float  # K: the device part's host time x K is the board's (calibrated: at the median)
    source: str  # "given" (--device-slowdown K) or "calibrated" (each part brought to its prediction)
    emulated: bool  # False: the part ran at this host's own speed
    device_part: Calibration | None = None
    whole_model: Calibration | None = None  # the all-on-device baseline's
    encode_board_s: float = 0.0  # calibrated: each request's encoding waits until this (the codec's predicted time)


@dataclass(frozen=True)
class StreamReport(Record):
    frames: int
    ok: int
    errors: int
    error_messages: list[str]
    offered_fps: float | None
    throughput_fps: float
    bound_fps: float  # 1 / the slowest stage (or the offered rate, if lower)
    ratio: float | None  # throughput / bound
    stage_periods_s: dict[str, float]
    bottleneck: str
    latency_s: Percentiles
    wall_s: float
    predicted_fps: float | None = None  # the plan's throughput prediction (the same pipeline model as bound_fps)


@dataclass(frozen=True)
class ServerOnlyStages(Record):
    transfer_s: float
    server_s: float


@dataclass(frozen=True)
class Baselines(Record):
    """The whole model on the device (dilated like the device part) and on the server (the input sent)."""

    all_device_s: float
    all_server_s: float | None  # None: every request failed
    all_server: ServerOnlyStages | None
    requests: int
    all_device_fps: float | None = None  # with --stream
    all_server_fps: float | None = None
    predicted_all_device: Prediction | None = None  # what the plan predicted for each baseline
    predicted_all_server: Prediction | None = None
    device_calibration: Calibration | None = None


@dataclass(frozen=True)
class Versus(Record):
    """How many times better the split did than each baseline in the same run, on the plan's objective."""

    measure: str
    split: float
    all_device: float
    all_server: float | None
    vs_all_device: float
    vs_all_server: float | None


@dataclass(frozen=True)
class SplitBenchReport(Record):
    plan: str
    requests: int
    ok: int
    errors: int
    error_messages: list[str]
    stages: dict[str, Percentiles]
    samples: dict[str, list[float]]  # per ok request, in order
    bound_s: float  # device + bytes / bandwidth each way + round trip + server
    bytes_per_request: BytesPerRequest
    predicted_s: float
    predicted: Prediction
    baselines: Baselines | None
    outputs_match: bool | None
    max_abs_err: float | None
    link: LinkReport
    slowdown: SlowdownReport
    cut: CutRecord
    stream: StreamReport | None
    versus_baselines: Versus | None
    codec: str | None = None  # the plan's codec at the cut (partition --codec); None: plain tensors
    reply_codec: str | None = None  # the codec the server answers in (partition --reply-codec); None: plain tensors
    # Every classifier output (one row of scores) kept the unsplit model's top class on the input run; None: no
    # such output (or no answer to compare).
    same_top1: bool | None = None
    tls: bool = False  # the split's connection was encrypted (run-bench --tls)
    # The prediction for what this run ran (the server on this host, the emulated link), beside `predicted`, the
    # plan's; None with --device-slowdown, or for a plan written before its prediction kept its bytes.
    this_run: RunPrediction | None = None
    planned_for: str = ""  # the device, link and server the plan's prediction is for

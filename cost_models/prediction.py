"""What the cost models predict for one split of a model: seconds per stage, frames per second, joules.

The formulas are in splitnn.onnxsplit.vertical.planning (`predict`); this is
the record they fill, stored in plan.json and shown beside measurements.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    """Seconds per stage of one request; `total_s` is their sum, `throughput_fps` the pipelined rate."""

    device_s: float
    encode_s: float
    transfer_s: float
    server_s: float
    total_s: float
    throughput_fps: float
    energy_j: float | None  # None: the device profile's power was not measured
    decode_s: float = 0.0  # codecs: the server decoding the request, the device decoding the answer (in total_s)
    # The request's and the answer's bytes on the wire that transfer_s prices (None: a plan written before they were
    # kept); run-bench prices them again over the link it emulates.
    up_bytes: int | None = None
    down_bytes: int | None = None


def pipelined_fps(device_s: float, uplink_s: float, server_s: float, downlink_s: float) -> float:
    """Frames per second of a stream through a split, the one model of the pipeline that the planner's
    throughput objective and run-bench's `--stream` bound both use.

    The device computes frame i+1 while frame i crosses the uplink, frame i-1 is on the server and frame i-2
    comes back (runtime/pipelining.py): each stage works on its own frame, so the slowest one sets the rate.
    Each link direction serializes its frames: bytes * 8 / bits per second. The round trip delays every frame
    but does not hold the next one back, so it is latency, not a period.
    """
    slowest = max(device_s, uplink_s, server_s, downlink_s)
    return 1.0 / slowest if slowest > 0 else float("inf")

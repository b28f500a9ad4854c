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
    energy_j: float

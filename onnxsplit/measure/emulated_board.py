"""An emulated board that is the profiled board: each part is calibrated against itself on this host.

A bench cannot run on the board it plans for, so it runs the device part on
this host and makes it take as long as the device profile predicts for that
part: every request waits, after its real run, until the predicted time has
passed. At the start of the run the part is timed here (median of a few runs
after a warm-up): the report says how much faster this host is, and flags a
host slower than the board, where no wait is added and the part runs at this
host's own speed. A fixed target rather than a factor: a factor would multiply
this host's own jitter, and its runs between waits are slower than back to back
(caches and threads go cold), which a factor calibrated back to back misses.
The all-on-device baseline is emulated the same way, against the prediction
for the whole model.

An earlier version dilated every part by one factor taken from a cached
micro-benchmark of the host; a cache written under load, and onnxruntime's real
per-node cost, put its figures 40% and more away from the predictions.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from splitnn.onnxsplit.core.records import Record

CALIBRATION_RUNS = 5


@dataclass(frozen=True)
class Calibration(Record):
    """One part's calibration: what the profile predicts and what this host took."""

    predicted_s: float  # the device profile's prediction for the part
    host_s: float  # median of `runs` runs on this host, after one warm-up
    factor: float  # how much slower the board is than this host: predicted / host, at least 1
    # This host is slower than the profiled board: the part runs at this host's own speed. Never for a part the
    # profile predicts no time for (an empty device part): there is nothing to be slower than.
    host_slower: bool
    runs: int


def calibrate(run: Callable[[], Any], predicted_s: float, runs: int = CALIBRATION_RUNS) -> Calibration:
    """Time `run` (one inference of the part) on this host, beside the prediction it is brought to."""
    run()  # warm-up: the session's first run allocates and prepacks
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    host_s = statistics.median(times)
    return Calibration(predicted_s=predicted_s, host_s=host_s,
                       factor=max(predicted_s / host_s, 1.0) if host_s > 0 else 1.0,
                       host_slower=host_s > predicted_s > 0,
                       runs=runs)

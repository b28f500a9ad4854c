"""Bandwidth traces: a CSV of `time_s,mbps` steps, for planning against a link that moves and for replaying it.

Each row starts a step: the rate holds from its time to the next row's. The
last step has no end in the file; it is taken to last as long as the mean
step before it (one second for a one-step trace). The planner weighs each
rate by how long it lasts; `run-bench --trace` replays the steps.
"""
from __future__ import annotations

import csv
from pathlib import Path

from splitnn.onnxsplit.core.errors import SplitnnError

Trace = tuple[tuple[float, float], ...]  # (time_s, bits per second) steps


def read_trace(path: str | Path) -> Trace:
    """A bandwidth trace from a CSV of `time_s,mbps` rows (a header row is allowed)."""
    steps: list[tuple[float, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row_number, row in enumerate(csv.reader(handle), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    time_s, mbps = float(row[0]), float(row[1])
                except (ValueError, IndexError):
                    if row_number == 1:
                        continue  # header
                    raise SplitnnError(f"trace '{path}' line {row_number}: expected time_s,mbps, got {','.join(row)}") from None
                if mbps <= 0 or time_s < 0 or (steps and time_s <= steps[-1][0]):
                    raise SplitnnError(f"trace '{path}' line {row_number}: times must increase from 0 and rates be positive")
                steps.append((time_s, mbps * 1e6))
    except OSError as exc:
        raise SplitnnError(f"cannot read trace '{path}': {exc.strerror}") from None
    if not steps:
        raise SplitnnError(f"trace '{path}' has no time_s,mbps rows")
    return tuple(steps)


def rate_at(trace: Trace, t: float) -> float:
    """The rate of `trace` at `t` seconds from its start: the step that began last (the first step before it)."""
    current = trace[0][1]
    for start, bps in trace:
        if start > t:
            break
        current = bps
    return current


def time_weights(trace: Trace) -> list[tuple[float, float]]:
    """(bits per second, seconds it lasts) per step of `trace` (see the module doc for the last step)."""
    times = [t for t, _ in trace]
    durations = [b - a for a, b in zip(times, times[1:])]
    last = sum(durations) / len(durations) if durations else 1.0
    return [(bps, seconds) for (_, bps), seconds in zip(trace, [*durations, last])]

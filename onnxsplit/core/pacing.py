"""Holding a run to the time an emulated machine would take: the host runs the work for real, then waits out the rest.

A bench on this host emulates slower machines (a board's tiles, its share of a
model) by letting each piece of work take as long as the machine's profile
predicts for it. The wait is a sleep, so the host's cores are free for the
other emulated machines meanwhile. Work the host is slower at than the
prediction is not held at all: it takes the host's own time.
"""
from __future__ import annotations

import time


def hold_until(start: float, target_s: float | None) -> float:
    """Sleep until `target_s` seconds have passed since `start` (a time.perf_counter() reading); returns the seconds
    since `start` once done. None: no wait."""
    if target_s is not None:
        left = start + target_s - time.perf_counter()
        if left > 0:
            time.sleep(left)
    return time.perf_counter() - start

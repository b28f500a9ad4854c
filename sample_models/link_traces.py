"""Seeded bandwidth traces of links that move: what `traces/*.csv` hold, and how they were made.

Each trace is a `time_s,mbps` CSV (cost_models/link_traces.py reads it),
the two walks in 0.5 s steps generated from a seed, so `python -m
splitnn.sample_models.link_traces traces/` writes the shipped files again,
byte for byte (a test checks it). They are synthetic, not measurements: the
shapes (a rate that wanders, fades of seconds, short handover dips, a tunnel)
and the orders of magnitude follow what published drive tests describe, for
3G/HSDPA commutes (Riiser et al., "Commute path bandwidth traces from 3G
networks", MMSys 2013: rates of a few Mbit/s at best, and near silence in
tunnels) and LTE (Raca et al., "Beyond throughput: a 4G LTE dataset with
channel and context metrics", MMSys 2018: rates from well under one to tens
of Mbit/s, changing within seconds). The parameters below are ours.

A silence is written as 0.01 Mbit/s: a trace's rates are positive (the link
emulator paces bytes by them); `run-bench --outage` gives true silences.

commute-lte (120 s): a log-normal random walk around 8 Mbit/s (step sigma
0.25, pulled back to the median with weight 0.1), four fades to a fifth of
the rate for 2-6 s, three handover dips to 0.1 Mbit/s for 0.5-1 s, and one
tunnel at 0.01 Mbit/s for 4 s.

wifi-to-3g (90 s): WiFi at 20 Mbit/s (+-15% per step) for 30 s, a 1.5 s dip
to 0.2 Mbit/s while the handover happens, then 3G around 1.1 Mbit/s (a
log-normal walk, step sigma 0.2), with a fade to 0.3 Mbit/s for 6 s near the
end.

swing-50-1 (120 s): 50 Mbit/s and 1 Mbit/s in turn, 10 s each, with no
noise: a fast and a slow link swapping (the adaptive device's tests of issue
30 add outages with `run-bench --outage`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

STEP_S = 0.5
SILENCE_MBPS = 0.01


def _walk(rng: np.random.Generator, steps: int, median: float, sigma: float, pull: float = 0.1) -> np.ndarray:
    """A log-normal random walk around `median`, pulled back towards it."""
    log_median = np.log(median)
    values = np.empty(steps)
    level = log_median
    for i in range(steps):
        level += pull * (log_median - level) + rng.normal(0, sigma)
        values[i] = np.exp(level)
    return values


def _dip(rates: np.ndarray, rng: np.random.Generator, count: int, length_s: tuple[float, float],
         factor: float | None = None, level: float | None = None) -> None:
    """`count` windows of random length in `length_s` where the rate is scaled by `factor` or set to `level`."""
    for _ in range(count):
        length = int(rng.uniform(*length_s) / STEP_S)
        start = int(rng.integers(0, len(rates) - length))
        window = slice(start, start + length)
        rates[window] = rates[window] * factor if factor is not None else level


def commute_lte(seed: int = 7) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    rates = _walk(rng, int(120 / STEP_S), 8.0, 0.25)
    _dip(rates, rng, 4, (2.0, 6.0), factor=0.2)
    _dip(rates, rng, 3, (0.5, 1.0), level=0.1)
    _dip(rates, rng, 1, (4.0, 4.0), level=SILENCE_MBPS)
    return [(i * STEP_S, float(r)) for i, r in enumerate(rates)]


def wifi_to_3g(seed: int = 11) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    wifi = 20.0 * (1 + rng.uniform(-0.15, 0.15, int(30 / STEP_S)))
    dip = np.full(int(1.5 / STEP_S), 0.2)
    cellular = _walk(rng, int(90 / STEP_S) - len(wifi) - len(dip), 1.1, 0.2)
    fade = slice(len(cellular) - int(20 / STEP_S), len(cellular) - int(14 / STEP_S))
    cellular[fade] = 0.3
    rates = np.concatenate([wifi, dip, cellular])
    return [(i * STEP_S, float(r)) for i, r in enumerate(rates)]


def swing_50_1() -> list[tuple[float, float]]:
    return [(float(t), 50.0 if (t // 10) % 2 == 0 else 1.0) for t in range(0, 120, 10)]


TRACES = {"commute-lte": commute_lte, "wifi-to-3g": wifi_to_3g, "swing-50-1": swing_50_1}


def trace_csv(steps: list[tuple[float, float]]) -> str:
    """The CSV text of a trace: time_s,mbps rows, rates to three significant figures."""
    return "time_s,mbps\n" + "".join(f"{t:g},{max(r, SILENCE_MBPS):.3g}\n" for t, r in steps)


def write_traces(folder: str | Path) -> list[Path]:
    """Write every trace of TRACES to `folder` as NAME.csv."""
    from splitnn.onnxsplit.core.atomic_files import write_text_atomic

    paths = []
    for name, make in TRACES.items():
        path = Path(folder) / f"{name}.csv"
        write_text_atomic(path, trace_csv(make()))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_traces(sys.argv[1] if len(sys.argv) > 1 else "traces"):
        print(f"wrote {written}")

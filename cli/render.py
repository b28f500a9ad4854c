"""Small rendering helpers shared by the commands."""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence

from rich.console import Console

# Output piped to a file or a program is as wide as its content needs: tables keep every cell whole.
PIPED_WIDTH = 10_000


def stdout() -> Console:
    """The console for results: the terminal's width, or, piped without COLUMNS set, wide enough for any table."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=PIPED_WIDTH if piped else None)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def log_line(line: str) -> None:
    """One line of a long-running command's log on stderr, whole (never wrapped, for grep and log files) and as
    it is (no markup: it may hold what a peer sent, such as a device's name)."""
    stderr().print(line, soft_wrap=True, markup=False)


def human_bytes(count: int | float) -> str:
    """Decimal units: 553.4 MB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def human_count(count: int | float) -> str:
    """15.47 G, 138.4 M, 61.7 k."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f} {unit}"
    return str(int(count))


_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 80) -> str:
    """Values as a row of block characters on a log scale (0 drawn as a blank), squeezed to `width`
    by taking the maximum of each bucket, so a narrow peak is never lost."""
    if not values:
        return ""
    buckets = min(width, len(values))
    squeezed = [
        max(values[i * len(values) // buckets : max((i + 1) * len(values) // buckets, i * len(values) // buckets + 1)])
        for i in range(buckets)
    ]
    positive = [v for v in squeezed if v > 0]
    if not positive:
        return " " * buckets
    low, high = math.log10(min(positive)), math.log10(max(positive))
    span = (high - low) or 1.0
    return "".join(
        " " if v <= 0 else _BLOCKS[min(len(_BLOCKS) - 1, int((math.log10(v) - low) / span * (len(_BLOCKS) - 1) + 0.5))]
        for v in squeezed
    )

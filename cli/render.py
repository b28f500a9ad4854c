"""Small rendering helpers shared by the commands."""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from splitnn.cost_models.registry import UnpricedOps

# Output piped to a file or a program is as wide as its content needs: tables keep every cell whole.
PIPED_WIDTH = 10_000


def stdout() -> Console:
    """The console for results: the terminal's width, or, piped without COLUMNS set, wide enough for any table."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=PIPED_WIDTH if piped else None)


def stderr() -> Console:
    """The console for notes, warnings and progress: on a terminal, its width; piped (to a log file, a program),
    every line whole, never wrapped at 80 columns."""
    piped = not sys.stderr.isatty()
    return Console(stderr=True, highlight=False, soft_wrap=piped,
                   width=PIPED_WIDTH if piped and "COLUMNS" not in os.environ else None)


def log_line(line: str) -> None:
    """One line of a long-running command's log on stderr, whole (never wrapped, for grep and log files) and as
    it is (no markup: it may hold what a peer sent, such as a device's name)."""
    stderr().print(line, soft_wrap=True, markup=False)


def warning(line: str, console: Console | None = None) -> None:
    """One warning line on stderr (or on `console`: a progress display's, which prints it above the bars), whole."""
    from rich.markup import escape

    (console or stderr()).print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)


def warn_unpriced(unpriced: UnpricedOps | None, console: Console | None = None) -> None:
    """The one line every command that plans or predicts from costs gives when some nodes are priced at 0 s for an
    operator with no cost formula (cost_models/registry.unpriced_ops); nothing when there is none."""
    if unpriced is None:
        return
    ops = ", ".join(f"{op} x{count}" for op, count in unpriced.counts.items())
    nodes = f"{unpriced.nodes} node{'s' if unpriced.nodes > 1 else ''}"
    warning(f"{nodes} of an operator with no cost formula ({ops}) priced at 0 s: the predictions ignore their work, "
            "so the cut and the times predicted may be wrong", console)


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

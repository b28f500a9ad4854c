"""Pictures of a bench: stacked bars of device, transfer and server time (the Neurosurgeon figure).

Drawn with matplotlib (the optional `plot` extra: pip install 'splitnn[plot]'),
off-screen, and written to a temporary name then renamed.
"""
from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitnn.onnxsplit.bench.split_report import SplitBenchReport

if TYPE_CHECKING:
    from splitnn.onnxsplit.bench.sweep import SweepReport
from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic
from splitnn.onnxsplit.core.errors import SplitnnError

STACK = (("device_s", "device compute", "#4c72b0"), ("transfer_s", "transfer", "#dd8452"), ("server_s", "server compute", "#55a868"))


@dataclass
class Bar:
    label: str
    seconds: dict[str, float]  # device_s, transfer_s, server_s
    predicted_s: float | None = None  # drawn as a marker beside the bar
    tags: list[str] = field(default_factory=list)  # e.g. "chosen", "best", written above the bar


def stacked_bars_png(path: str | Path, bars: list[Bar], title: str, ylabel: str = "ms per request") -> Path:
    """Write a PNG with one stacked bar per entry of `bars` (seconds, drawn in ms)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise SplitnnError(f"--plot '{path}' must name a .png file")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SplitnnError("--plot needs matplotlib: pip install 'splitnn[plot]' (or pip install matplotlib)") from None

    figure = bar_figure(plt, bars, title, ylabel)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def bar_figure(plt: Any, bars: list[Bar], title: str, ylabel: str = "ms per request") -> Any:
    """The matplotlib figure stacked_bars_png writes (its layout is tested: nothing drawn outside it)."""
    width = max(7.0, 0.55 * len(bars) + 4.5)
    figure, axes = plt.subplots(figsize=(width, 4.8), dpi=110)
    positions = list(range(len(bars)))
    bottoms = [0.0] * len(bars)
    for key, name, colour in STACK:
        heights = [bar.seconds.get(key, 0.0) * 1e3 for bar in bars]
        axes.bar(positions, heights, bottom=bottoms, color=colour, label=name, width=0.7)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    predicted = [(i, bar.predicted_s * 1e3) for i, bar in enumerate(bars) if bar.predicted_s is not None]
    if predicted:
        axes.scatter([i for i, _ in predicted], [v for _, v in predicted], marker="_", s=400, linewidths=2.5,
                     color="black", label="predicted", zorder=3)
    top = max(bottoms + [v for _, v in predicted] + [1e-9])
    for i, bar in enumerate(bars):
        if bar.tags:
            axes.text(i, max(bottoms[i], *(v for j, v in predicted if j == i)) + 0.02 * top, "\n".join(bar.tags),
                      ha="center", va="bottom", fontsize=8, fontweight="bold")
    axes.set_xticks(positions)
    axes.set_xticklabels([bar.label for bar in bars], rotation=60 if len(bars) > 6 else 0, ha="right" if len(bars) > 6 else "center",
                         fontsize=8)
    axes.set_ylim(0, top * 1.2)
    axes.set_ylabel(ylabel)
    # A long title wraps rather than running off both edges; the legend sits outside the axes, where it
    # covers neither a bar nor a prediction marker.
    axes.set_title("\n".join(textwrap.wrap(title, int(width * 11))), fontsize=10)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    return figure


def sweep_bars(sweep: SweepReport) -> list[Bar]:
    """One bar per measured cut of a sweep report, its measured stages and its prediction."""
    bars = []
    chosen = sweep.chosen.cut_id
    best = sweep.best.cut_id if sweep.best else None
    for point in sweep.sweep:
        tags = (["chosen"] if point.cut_id == chosen else []) + (["best"] if point.cut_id == best else [])
        label = f"{point.cut_id}: {point.after_node or '(input)'}"
        m = point.measured
        bars.append(Bar(label, {"device_s": m.device_s, "transfer_s": m.transfer_s, "server_s": m.server_s},
                        point.predicted_s, tags))
    return bars


def bench_bars(report: SplitBenchReport) -> list[Bar]:
    """The split measured and predicted, next to the all-device and all-server baselines."""
    stages = {k: v.p50 for k, v in report.stages.items()}
    measured = {"device_s": stages["device_s"] + stages["encode_s"], "transfer_s": stages["transfer_s"],
                "server_s": stages["server_s"]}
    p = report.predicted
    bars = [Bar("split, measured", measured, report.predicted_s),
            Bar("split, predicted", {"device_s": p.device_s + p.encode_s, "transfer_s": p.transfer_s,
                                     "server_s": p.server_s})]
    base = report.baselines
    if base is not None:
        device_predicted = base.predicted_all_device.total_s if base.predicted_all_device else None
        server_predicted = base.predicted_all_server.total_s if base.predicted_all_server else None
        bars.append(Bar("all on the device", {"device_s": base.all_device_s}, device_predicted))
        if base.all_server is not None:
            bars.append(Bar("all on the server", base.all_server.to_dict(), server_predicted))
    return bars

"""Pictures of a bench: stacked bars of device, transfer and server time (the Neurosurgeon figure), and an
adaptive run's timeline (latency per request over the bandwidth and the cut the device chose).

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
    from splitnn.onnxsplit.bench.adaptive import AdaptiveBenchReport
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
    plt = _pyplot(path)
    return _write_png(plt, bar_figure(plt, bars, title, ylabel), path)


def adaptive_timeline_png(path: str | Path, report: AdaptiveBenchReport, title: str) -> Path:
    """Write a PNG of an adaptive run over time: latency per request, the link's rate and the estimate, the cut."""
    path = Path(path)
    plt = _pyplot(path)
    return _write_png(plt, timeline_figure(plt, report, title), path)


def _pyplot(path: Path) -> Any:
    if path.suffix.lower() != ".png":
        raise SplitnnError(f"--plot '{path}' must name a .png file")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SplitnnError("--plot needs matplotlib: pip install 'splitnn[plot]' (or pip install matplotlib)") from None
    return plt


def _write_png(plt: Any, figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path


ANSWERED = (("remote", "answered by the server", "#4c72b0"), ("local", "answered on the device", "#dd8452"),
            ("error", "failed", "#c44e52"))


def timeline_figure(plt: Any, report: AdaptiveBenchReport, title: str) -> Any:
    """Three panels sharing time: end-to-end latency per request (by how it was answered, and the deadline),
    the link's true rate beside the device's estimate, and the kept cut each request used."""
    points = report.points
    figure, (latency, rate, cut) = plt.subplots(3, 1, figsize=(10, 7.5), dpi=110, sharex=True,
                                                gridspec_kw={"height_ratios": [3, 2, 1.2]})
    for key, name, colour in ANSWERED:
        chosen = [p for p in points if p.answered == key]
        if chosen:
            latency.scatter([p.t_s for p in chosen], [p.e2e_s * 1e3 for p in chosen], s=10, color=colour, label=name)
    if report.deadline_s is not None:
        latency.axhline(report.deadline_s * 1e3, color="black", linestyle="--", linewidth=1, label="deadline")
    latency.set_ylabel("end to end, ms")
    latency.set_ylim(bottom=0)
    latency.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    times = [p.t_s for p in points]
    true = [(p.true_bps or float("nan")) / 1e6 for p in points]
    estimate = [(p.estimate_bps or float("nan")) / 1e6 for p in points]
    rate.step(times, true, where="post", color="#55a868", label="link (the trace)")
    rate.plot(times, estimate, ".", markersize=3, color="#8172b2", label="device's estimate")
    rate.set_yscale("log")
    rate.set_ylabel("uplink, Mbit/s")
    rate.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    cuts = sorted({p.cut_id for p in points})
    cut.step(times, [cuts.index(p.cut_id) for p in points], where="post", color="#4c72b0")
    cut.set_yticks(range(len(cuts)))
    cut.set_yticklabels([f"cut {c}" for c in cuts], fontsize=8)
    cut.set_ylabel("cut used")
    cut.set_xlabel("time since the first request, s")
    latency.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    figure.tight_layout()
    return figure


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
    # A codec's decoding (the request's on the server, the answer's on the device) joins the server's bar.
    measured = {"device_s": stages["device_s"] + stages["encode_s"], "transfer_s": stages["transfer_s"],
                "server_s": stages["server_s"] + stages.get("decode_s", 0.0)}
    p = report.predicted
    bars = [Bar("split, measured", measured, report.predicted_s),
            Bar("split, predicted", {"device_s": p.device_s + p.encode_s, "transfer_s": p.transfer_s,
                                     "server_s": p.server_s + p.decode_s})]
    base = report.baselines
    if base is not None:
        device_predicted = base.predicted_all_device.total_s if base.predicted_all_device else None
        server_predicted = base.predicted_all_server.total_s if base.predicted_all_server else None
        bars.append(Bar("all on the device", {"device_s": base.all_device_s}, device_predicted))
        if base.all_server is not None:
            bars.append(Bar("all on the server", base.all_server.to_dict(), server_predicted))
    return bars

"""Pictures of a bench: stacked bars of device, transfer and server time (the Neurosurgeon figure), and an
adaptive run's timeline (latency per request over the bandwidth and the cut the device chose); and of what
`partition --codec auto` priced: every pair's request bytes against its predicted latency, by verdict.

Drawn with matplotlib (the optional `plot` extra: pip install 'splitnn[plot]'),
off-screen, and written to a temporary name then renamed.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitnn.onnxsplit.measure.split_report import SplitBenchReport

if TYPE_CHECKING:
    from splitnn.onnxsplit.artifacts.plan_file import CodecTrialRecord
    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport
    from splitnn.onnxsplit.measure.sweep import SweepReport
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


def codec_trials_png(path: str | Path, trials: Sequence[CodecTrialRecord], title: str) -> Path:
    """Write a PNG of --codec auto's pairs: request bytes against predicted latency, by verdict."""
    path = Path(path)
    plt = _pyplot(path)
    return _write_png(plt, trials_figure(plt, trials, title), path)


# (verdict prefix, legend, colour, marker); pairs not priced have no bytes and are left out.
VERDICTS = (("ruled out", "ruled out by the output change", "#c44e52", "x"),
            ("not checked", "slower than the chosen pair", "#8c8c8c", "."),
            ("within the limit", "within the bound, a finer quality faster", "#55a868", "o"),
            ("chosen", "chosen", "#4c72b0", "*"))


def trials_figure(plt: Any, trials: Sequence[CodecTrialRecord], title: str) -> Any:
    """One point per priced pair (bytes up and predicted ms, both on log axes); the chosen pair and the fastest
    one ruled out are labelled with their cut and codec."""
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    priced = [t for t in trials if t.request_bytes is not None and t.request_bytes > 0]
    for prefix, name, colour, marker in VERDICTS:
        points = [t for t in priced if t.verdict.startswith(prefix)]
        if points:
            axes.scatter([t.request_bytes for t in points], [t.total_s * 1e3 for t in points], c=colour,
                         marker=marker, s=90 if prefix == "chosen" else 28, label=f"{name} ({len(points)})",
                         zorder=3 if prefix == "chosen" else 2)
    ruled_out = [t for t in priced if t.verdict.startswith("ruled out")]
    named = [t for t in priced if t.verdict == "chosen"] + ruled_out[:1]  # the chosen, and the fastest ruled out
    for t in named:
        chosen = t.verdict == "chosen"  # below right of its star; the one ruled out above left of its cross
        axes.annotate(f"cut {t.cut_id}: {t.codec}", (t.request_bytes, t.total_s * 1e3), fontsize=8,
                      xytext=(8, -14) if chosen else (-4, 10), ha="left" if chosen else "right",
                      textcoords="offset points")
    exact = [t for t in trials if not t.tensors]
    for t in exact:  # a cut that sends nothing: a line at its latency
        axes.axhline(t.total_s * 1e3, color="#dd8452", linestyle="--", linewidth=1,
                     label=f"cut {t.cut_id} sends nothing ({t.total_s * 1e3:.1f} ms)")
    unpriced = len(trials) - len(priced) - len(exact)
    axes.set_xscale("log")
    axes.set_yscale("log")  # from the fastest pairs to cuts that send megabytes: orders of magnitude apart
    axes.set_xlabel("request bytes on the wire")
    axes.set_ylabel("predicted ms per request")
    axes.set_title("\n".join(textwrap.wrap(title + (f"; {unpriced} pairs not priced (slower at any size)"
                                                      if unpriced else ""), 72)), fontsize=10)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    return figure


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
    estimate = [(p.estimate_bps or float("nan")) / 1e6 for p in points]
    steps = trace_steps(report.trace, times[-1] if times else 0.0)
    if steps:  # the trace itself, each step where it began: a change between two requests is drawn where it came
        rate.step([t for t, _ in steps], [bps / 1e6 for _, bps in steps], where="post", color="#55a868",
                  label="link (the trace)")
    else:  # a fixed rate, as each request saw it
        rate.step(times, [(p.true_bps or float("nan")) / 1e6 for p in points], where="post", color="#55a868",
                  label="link")
    rate.plot(times, estimate, ".", markersize=3, color="#8172b2", label="device's estimate")
    rate.set_yscale("log")
    rate.set_ylabel("uplink, Mbit/s")
    rate.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    cuts = sorted({p.cut_id for p in points})
    cut.step(times, [cuts.index(p.cut_id) for p in points], where="post", color="#4c72b0")
    cut.set_yticks(range(len(cuts)))
    cut.set_yticklabels([f"cut {c}" for c in cuts], fontsize=8)
    cut.set_ylabel("cut used")
    cut.set_xlabel("time since the run started (the trace's clock), s")
    latency.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    figure.tight_layout()
    return figure


def trace_steps(trace: Sequence[tuple[float, float]], end_s: float) -> list[tuple[float, float]]:
    """A trace's (time_s, bps) steps from 0 to `end_s` (the last request), for drawing as a step function: the
    rate at 0, every change before `end_s`, and the rate at `end_s` again so that the last step has its length."""
    if not trace:
        return []
    start = [bps for t, bps in trace if t <= 0][-1:] or [trace[0][1]]
    inside = [(t, bps) for t, bps in trace if 0 < t < end_s]
    last = inside[-1][1] if inside else start[0]
    return [(0.0, start[0]), *inside, *([(end_s, last)] if end_s > 0 else [])]


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

"""The stacked-bar picture: a real PNG whose bars are drawn from the numbers given."""
from __future__ import annotations

import pytest

from splitnn.cost_models.prediction import Prediction
from splitnn.onnxsplit.artifacts.plan_file import CutRecord
from splitnn.onnxsplit.measure.charts import Bar, bench_bars, stacked_bars_png, sweep_bars
from splitnn.onnxsplit.measure.split_report import (
    Baselines,
    BytesPerRequest,
    LinkReport,
    Percentiles,
    ServerOnlyStages,
    SlowdownReport,
    SplitBenchReport,
)
from splitnn.onnxsplit.measure.sweep import PointBrief, StageSeconds, SweepPoint, SweepReport
from splitnn.onnxsplit.core.errors import SplitnnError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_png_written_with_its_size(tmp_path):
    pytest.importorskip("matplotlib")
    bars = [Bar("a", {"device_s": 0.1, "transfer_s": 0.05, "server_s": 0.01}, 0.15, ["chosen"]), Bar("b", {"device_s": 0.2})]
    path = stacked_bars_png(tmp_path / "bars.png", bars, "title")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 600 and height >= 400
    assert [p.name for p in tmp_path.iterdir()] == ["bars.png"]  # no temporary file left


def test_not_a_png_name(tmp_path):
    with pytest.raises(SplitnnError, match="must name a .png file"):
        stacked_bars_png(tmp_path / "bars.jpg", [], "t")


def test_bars_from_reports():
    def point(cut_id, node, predicted_s, device_s, transfer_s, server_s):
        return SweepPoint(cut_id=cut_id, tensors=("t",), after_node=node, bytes=1, predicted_s=predicted_s,
                          measured_s=device_s + transfer_s + server_s,
                          predicted=StageSeconds(predicted_s, 0.0, 0.0),
                          measured=StageSeconds(device_s, transfer_s, server_s, device_s + transfer_s + server_s),
                          ok=1, errors=0, slowdown=1.0, outputs_match=True)

    points = (point(1, "conv1", 0.3, 0.1, 0.2, 0.01), point(2, "fc", 0.2, 0.35, 0.0, 0.0))
    brief = {p.cut_id: PointBrief(p.cut_id, p.tensors, p.after_node, p.predicted_s, p.measured_s) for p in points}
    sweep = SweepReport(model="m", objective="latency", measure="e2e", device="d", server="s", link="l", requests=1,
                        rounds=1, feasible_cuts=2, sweep=points, chosen=brief[2], best=brief[1], regret=1.1)
    bars = sweep_bars(sweep)
    assert [b.label for b in bars] == ["1: conv1", "2: fc"] and [b.tags for b in bars] == [["best"], ["chosen"]]
    assert bars[0].seconds["transfer_s"] == 0.2 and bars[1].predicted_s == 0.2
    stages = {"device_s": 0.1, "encode_s": 0.01, "transfer_s": 0.2, "server_s": 0.05, "e2e_s": 0.36}
    report = SplitBenchReport(
        plan="out", requests=1, ok=1, errors=0, error_messages=[],
        stages={k: Percentiles(v, v) for k, v in stages.items()}, samples={k: [v] for k, v in stages.items()},
        bound_s=0.36, bytes_per_request=BytesPerRequest(1000, 40), predicted_s=0.29,
        predicted=Prediction(device_s=0.1, encode_s=0.0, transfer_s=0.15, server_s=0.04, total_s=0.29,
                             throughput_fps=6.7, energy_j=0.5),
        baselines=Baselines(all_device_s=0.5, all_server_s=0.9, all_server=ServerOnlyStages(0.8, 0.1), requests=1),
        outputs_match=True, max_abs_err=0.0, link=LinkReport("test", 1e6, 1e6, 0.01, 0.0, 0.0, 0),
        slowdown=SlowdownReport(1.0, "none", False),
        cut=CutRecord(id=3, tensors=("x",), bytes=1000, reply_bytes=40, after_node="conv", device_macs=1,
                      device_param_bytes=1, device_peak_bytes=1, device_memory_bytes=2),
        stream=None, versus_baselines=None)
    bars = bench_bars(report)
    assert [b.label for b in bars] == ["split, measured", "split, predicted", "all on the device", "all on the server"]
    assert bars[0].seconds["device_s"] == pytest.approx(0.11) and bars[3].seconds == {"transfer_s": 0.8, "server_s": 0.1}


@pytest.mark.parametrize("count", [2, 12])
def test_nothing_is_drawn_outside_the_picture_and_the_legend_covers_no_marker(count):
    """issue 18: a sweep's title was clipped at both ends and its legend covered a prediction marker."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitnn.onnxsplit.measure.charts import bar_figure

    bars = [Bar(f"{i}: /model.22/Concat_{i}_output_0", {"device_s": 0.01 * (i + 1), "transfer_s": 0.2},
                0.25, ["chosen"] if i == 0 else []) for i in range(count)]
    title = ("nudenet/320n.onnx: measured per cut (e2e p50 per request), rockpro64 -> up 18.88 Mbit/s, down 18.88 "
             "Mbit/s, delay 5 ms each way -> cloud-cpu")
    figure = bar_figure(plt, bars, title)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    axes = figure.axes[0]
    texts = [axes.title, axes.yaxis.label, *axes.get_xticklabels(), axes.get_legend()]
    for artist in texts:
        box = artist.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, artist
    legend = axes.get_legend().get_window_extent(renderer)
    assert legend.x0 >= axes.get_window_extent(renderer).x1  # beside the bars, not over them
    plt.close(figure)


def test_an_adaptive_timeline_keeps_its_text_on_the_page():
    """run-bench --plot on an adaptive plan: latency, the link's rate against the estimate, and the cut, over time."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport, Latencies, RequestPoint
    from splitnn.onnxsplit.measure.charts import timeline_figure

    points = tuple(RequestPoint(0.1 * i, 20e6 if i < 20 else 1e6, 20e6 if i < 20 else 0.8e6, 0 if i < 20 else 37,
                                "remote" if i < 20 else "local", 0.4 if i < 20 else 0.64) for i in range(40))
    report = AdaptiveBenchReport("out/vgg", 40, 20, 20, 0, 0.9, 0, Latencies(0.5, 0.64, 0.64, 0.52), {"0": 20, "37": 20},
                                 1, 2, True, 0.0, "trace of 180 steps", points)
    figure = timeline_figure(plt, report, "out/vgg: adaptive over up 5.85 Mbit/s, down 5.85 Mbit/s, delay 25 ms "
                                          "each way, trace of 180 steps, deadline 900 ms")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    latency, rate, cut = figure.axes
    assert [t.get_text() for t in cut.get_yticklabels()] == ["cut 0", "cut 37"]
    assert len(latency.collections) == 2  # remote and local answers, each its own colour
    for artist in (latency.title, latency.get_legend(), rate.get_legend(), cut.xaxis.label, *cut.get_yticklabels()):
        box = artist.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, artist
    plt.close(figure)


def test_codec_trials_are_drawn_by_verdict_and_their_text_stays_on_the_page(tmp_path):
    """partition --codec auto --plot: one point per priced pair (its bytes against its predicted latency) in its
    verdict's colour, the chosen pair and the fastest ruled out labelled; pairs not priced are counted, not
    drawn."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitnn.onnxsplit.artifacts.plan_file import CodecTrialRecord
    from splitnn.onnxsplit.measure.charts import codec_trials_png, trials_figure

    trials = [CodecTrialRecord(0, ("input",), "jpeg:70", 0.28, 3.5, "ruled out: relerr 0.071 (limit relerr<=0.05)", 10300),
              CodecTrialRecord(0, ("input",), "webp:86:0", 0.35, 2.9, "chosen", 15011),
              CodecTrialRecord(0, ("input",), "webp:90:0", 0.36, 2.8, "within the limit; a finer quality is faster",
                               16089),
              CodecTrialRecord(31, ("maxpool5_out",), "lossless", 0.71, 1.4, "not checked: slower than the chosen pair",
                               80000),
              CodecTrialRecord(37, (), "none", 0.638, 1.6, "not checked: slower than the chosen pair", 0),
              CodecTrialRecord(24, ("maxpool4_out",), "fp16", 0.9, None, "not priced: its compute and the round trip "
                               "are slower than the chosen pair", None)]
    figure = trials_figure(plt, trials, "--codec auto on vgg16.onnx, rockpro64 -> 3g -> host: chose cut 0 in webp:86:0")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    assert len(axes.collections) == 4  # ruled out, not checked, within the limit, chosen: one scatter each
    labels = sorted(t.get_text() for t in axes.texts)
    assert labels == ["cut 0: jpeg:70", "cut 0: webp:86:0"]  # the chosen pair and the fastest ruled out
    assert "1 pairs not priced" in axes.title.get_text() and len(axes.lines) == 1  # cut 37 sends nothing: a line
    page = figure.bbox
    for artist in (axes.title, axes.xaxis.label, axes.yaxis.label, axes.get_legend()):
        box = artist.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, artist
    plt.close(figure)
    data = codec_trials_png(tmp_path / "pairs.png", trials, "t").read_bytes()
    assert data.startswith(PNG_MAGIC)


def test_the_timeline_draws_the_trace_where_its_rate_changed():
    """issue 30, item 8: a drop at 4 s between requests at 3.5 s and 6.35 s is drawn at 4 s (it was drawn at 6.35,
    the rate as the next request saw it), from the run's start to its last request."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchReport, Latencies, RequestPoint
    from splitnn.onnxsplit.measure.charts import timeline_figure

    points = (RequestPoint(3.5, 50e6, 50e6, 0, "remote", 0.4), RequestPoint(6.35, 40e6, 1e6, 37, "local", 0.64))
    report = AdaptiveBenchReport("out/vgg", 2, 1, 1, 0, 0.9, 0, Latencies(0.5, 0.64, 0.64, 0.52), {"0": 1, "37": 1},
                                 1, 0, True, 0.0, "the trace's rate both ways (50 Mbit/s, then 1 Mbit/s from 4 s)",
                                 points, trace=((0.0, 50e6), (4.0, 1e6), (10.0, 1e6)))
    figure = timeline_figure(plt, report, "out/vgg: adaptive")
    _, rate, _ = figure.axes
    trace = next(line for line in rate.get_lines() if "trace" in line.get_label())
    assert list(trace.get_xdata()) == [0.0, 4.0, 6.35] and list(trace.get_ydata()) == [50.0, 1.0, 1.0]
    plt.close(figure)

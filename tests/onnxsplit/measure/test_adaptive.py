"""run-bench on an adaptive plan: what its report says (issue 30, item 8)."""
from __future__ import annotations

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.measure.adaptive import AdaptiveBenchOptions, run_adaptive_bench
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.runtime.link_emulator import settings_for
from splitnn.onnxsplit.vertical.adaptive import plan_adaptive, write_adaptive
from splitnn.onnxsplit.vertical.planning import plan_split


def test_a_cut_that_sent_nothing_is_not_counted_and_the_deadline_is_named(sample_path, tmp_path):
    """A deadline barely above the board's own time leaves the server no time at any cut that sends: the device
    answers every request alone. `requests_per_cut` counts the board alone's cut (it counted the cut the estimate
    chose, where nothing was sent), and the report says that the deadline held the chosen cut back. The link's
    description and the report name the trace it ran, not the plan's fixed rate."""
    analysis = analyze(load_graph(sample_path("alexnet")))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    document = write_adaptive(analysis, plan_adaptive(plan, 0.1e6, 100e6), tmp_path / "ad", ort_format=False)
    alone = next(k for k in document.kept if k.server_model is None)
    trace = ((0.0, 200e6), (60.0, 1e6))  # fast for the whole test: the estimate picks a cut that sends
    link = settings_for(5.85e6, 0.01, trace=trace)
    report = run_adaptive_bench(tmp_path / "ad", link,
                                AdaptiveBenchOptions(requests=3, deadline_s=1.02 * alone.predicted.device_s))
    assert report.answered_local == 3 and report.answered_remote == 0
    assert report.requests_per_cut == {str(alone.cut.id): 3}, report.requests_per_cut
    assert all(p.cut_id == alone.cut.id for p in report.points)
    held = [p.held_back for p in report.points if p.held_back is not None]
    assert held, "the estimate of a 200 Mbit/s link chose a cut that sends"
    assert all(h.reason == "deadline" and h.cut_id != alone.cut.id and h.budget_s < h.needed_s for h in held)
    assert sum(h.requests for h in report.held_back) == len(held)
    assert {h.reason for h in report.held_back} == {"deadline"}
    assert report.trace == trace
    assert "5.85" not in report.link and "200 Mbit/s, then 1 Mbit/s from 60 s" in report.link, report.link

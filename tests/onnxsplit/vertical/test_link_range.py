"""The best cut over a range of rates (exact lower envelope) and the best single cut over a trace."""
from __future__ import annotations

import re

import numpy as np
import pytest

import splitnn

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.cost_models.link_traces import time_weights
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical.link_range import best_over_range, best_over_trace, latency_lines
from splitnn.onnxsplit.vertical.planning import plan_split


@pytest.fixture(scope="module", params=["vgg16", "resnet18"])
def lines(request, sample_path):
    analysis = analyze(load_graph(sample_path(request.param)))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    return request.param, analysis, plan, latency_lines(plan)


def test_lines_reproduce_the_predictions_at_other_rates(lines):
    import dataclasses

    _, analysis, plan, found = lines
    slower = dataclasses.replace(plan.link, uplink_bps=plan.link.uplink_bps / 7, downlink_bps=plan.link.down_bps / 7)
    again = plan_split(analysis, plan.device, plan.server, slower, "latency")
    by_id = {c.cut.id: c.predicted.total_s for c in again.candidates}
    for line in found:
        assert line.seconds(slower.uplink_bps) == pytest.approx(by_id[line.candidate.cut.id], rel=1e-9)


def test_the_envelope_is_the_best_cut_at_every_rate(lines):
    name, _, _, found = lines
    low, high = 0.05e6, 200e6
    kept = best_over_range(found, low, high)
    assert kept[0].high_bps == pytest.approx(high) and kept[-1].low_bps == pytest.approx(low)
    assert all(a.low_bps == pytest.approx(b.high_bps) for a, b in zip(kept, kept[1:]))  # contiguous, no gap
    assert len({k.candidate.cut.id for k in kept}) == len(kept)
    if name == "vgg16":  # the input goes up on a fast link, everything stays on the board on a slow one
        assert len(kept) >= 2 and kept[0].candidate.cut.id == 0 and not kept[-1].candidate.cut.tensors
    for bps in np.geomspace(low, high, 997):
        best = min(line.seconds(bps) for line in found)
        covering = next(k for k in kept if k.low_bps * (1 - 1e-9) <= bps <= k.high_bps * (1 + 1e-9))
        line = next(x for x in found if x.candidate.cut.id == covering.candidate.cut.id)
        assert line.seconds(bps) == pytest.approx(best, rel=1e-9, abs=1e-12)
    with pytest.raises(SplitnnError, match="0 < low <= high"):
        best_over_range(found, 2e6, 1e6)


def test_the_trace_choice_is_the_best_mean_and_is_compared_with_the_typical_rate(lines):
    _, _, plan, found = lines
    trace = ((0.0, 20e6), (10.0, 0.3e6), (40.0, 20e6), (50.0, 5e6))  # a long fade in the middle
    weights = time_weights(trace)
    assert weights == [(20e6, 10.0), (0.3e6, 30.0), (20e6, 10.0), (5e6, 50 / 3)]
    choice = best_over_trace(found, weights, plan.link.uplink_bps)
    means = [sum(line.seconds(b) * s for b, s in weights) / sum(s for _, s in weights) for line in found]
    assert choice.expected_s == pytest.approx(min(means)) and choice.statistic == "mean"
    assert choice.typical_expected_s >= choice.expected_s
    p95 = best_over_trace(found, weights, plan.link.uplink_bps, percentile=95)
    assert p95.statistic == "p95" and p95.expected_s >= choice.expected_s - 1e-12


def test_partition_over_a_trace_records_the_choice_and_refuses_bad_traces(sample_path, tmp_path):
    trace = tmp_path / "fade.csv"
    trace.write_text("time_s,mbps\n0,20\n10,0.3\n40,20\n50,5\n")
    model = sample_path("vgg16")
    plan = splitnn.partition(model, tmp_path / "p", link="wifi", trace=trace, percentile=95,
                             ort_format=False).to_dict()
    over = plan["over_trace"]
    # WiFi alone would send the input; over a trace with a long fade, the board keeps everything.
    assert over["typical_cut_id"] == 0 and plan["cut"]["tensors"] == [] and over["statistic"] == "p95"
    assert over["expected_s"] == pytest.approx(plan["predicted"]["total_s"])
    assert over["expected_s"] < over["typical_expected_s"]
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,mbps\n0,20\n5,3\n5,1\n")
    with pytest.raises(SplitnnError, match=re.escape("times must increase")):
        splitnn.partition(model, tmp_path / "q", trace=bad)
    with pytest.raises(SplitnnError, match=re.escape("add --trace")):
        splitnn.partition(model, tmp_path / "q", percentile=95)
    with pytest.raises(SplitnnError, match=re.escape("drop --cut")):
        splitnn.partition(model, tmp_path / "q", trace=trace, cut="x")
    assert not (tmp_path / "q").exists()


def test_partition_lists_the_cuts_best_over_a_range(sample_path, tmp_path):
    model = sample_path("vgg16")
    plan = splitnn.partition(model, tmp_path / "p", link="4g", bandwidth_range="0.1Mbit-100Mbit", ort_format=False)
    kept = plan.to_dict()["over_range"]
    assert kept[0]["high_bps"] == pytest.approx(100e6) and kept[-1]["low_bps"] == pytest.approx(0.1e6)
    assert [k["cut_id"] for k in kept][0] == 0 and kept[-1]["tensors"] == []  # the input when fast, the board when slow
    for k in kept:  # each cut's line is its prediction: at the middle of its interval it beats every other one
        middle = (k["low_bps"] * k["high_bps"]) ** 0.5
        mine = k["fixed_s"] + k["wire_bits"] / middle
        assert all(mine <= o["fixed_s"] + o["wire_bits"] / middle + 1e-12 for o in kept)
    with pytest.raises(SplitnnError, match=re.escape("low end")):
        splitnn.partition(model, tmp_path / "q", bandwidth_range="5Mbit-1Mbit")
    with pytest.raises(SplitnnError, match=re.escape("LOW-HIGH")):
        splitnn.partition(model, tmp_path / "q", bandwidth_range="5Mbit")
    assert not (tmp_path / "q").exists()

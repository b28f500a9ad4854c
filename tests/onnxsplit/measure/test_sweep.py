"""The sweep: every measured cut reported against its prediction, and the regret computed from the measurements."""
from __future__ import annotations

import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.measure.sweep import predicted_seconds, sweep_cuts
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.runtime.link_emulator import settings_for
from splitnn.onnxsplit.vertical.planning import plan_split


@pytest.fixture(scope="module")
def lenet(sample_path):
    return analyze(load_graph(sample_path("lenet5")))


def _plan(analysis, objective="latency"):
    return plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("wifi"), objective)


def test_top_cuts_measured_and_regret_from_measurements(lenet, tmp_path):
    plan = _plan(lenet)
    report = sweep_cuts(lenet, plan, settings_for(18.88e6, 0.01), top=3, requests=3, slowdown=2.0, workdir=tmp_path).to_dict()
    points = report["sweep"]
    ranked = sorted((c for c in plan.candidates if c.feasible), key=lambda c: (c.predicted.total_s, c.cut.id))
    assert {p["cut_id"] for p in points} == {c.cut.id for c in ranked[:3]}
    assert [p["cut_id"] for p in points] == sorted(p["cut_id"] for p in points)
    for point in points:
        assert point["ok"] == 3 and point["errors"] == 0 and point["outputs_match"] is True
        assert point["measured_s"] == point["measured"]["e2e_s"] > 0 and point["slowdown"] == 2.0
        candidate = plan.candidates[point["cut_id"]]
        assert point["predicted_s"] == predicted_seconds(candidate, "latency") == candidate.predicted.total_s
    best = min(points, key=lambda p: p["measured_s"])
    chosen = next(p for p in points if p["cut_id"] == plan.chosen.cut.id)
    assert report["best"]["cut_id"] == best["cut_id"] and report["chosen"]["cut_id"] == plan.chosen.cut.id
    assert report["regret"] == chosen["measured_s"] / best["measured_s"] >= 1.0
    assert list(tmp_path.iterdir()) == []  # the parts written per cut are gone
    assert report["rounds"] == 2  # 3 requests per cut: 2 in the first visit, 1 in the second


def test_throughput_sweep_measures_streams(lenet, tmp_path):
    plan = _plan(lenet, "throughput")
    # No slowdown given: each cut's device part is calibrated to its prediction, as run-bench --sweep does.
    report = sweep_cuts(lenet, plan, settings_for(18.88e6, 0.01), top=1, requests=3, workdir=tmp_path).to_dict()
    (point,) = report["sweep"]
    assert point["cut_id"] == plan.chosen.cut.id and report["measure"] == "seconds per frame, pipelined"
    assert point["predicted_s"] == pytest.approx(1 / plan.chosen.predicted.throughput_fps)
    assert point["measured_s"] > 0 and report["regret"] == 1.0
    assert point["measured"]["device_s"] >= point["predicted"]["device_s"]  # it waited for the prediction


def test_energy_cannot_be_swept(lenet):
    with pytest.raises(SplitnnError, match="latency or throughput"):
        sweep_cuts(lenet, _plan(lenet, "energy"), settings_for(None, 0.0))


def test_a_sweep_in_a_codec_predicts_and_sends_every_cut_coded(lenet, tmp_path):
    """issue 14 in a sweep: every cut predicted at its tensors' measured bytes in the codec, and measured sending them."""
    plan = _plan(lenet)
    report = sweep_cuts(lenet, plan, settings_for(18.88e6, 0.01), top=3, requests=2, slowdown=2.0, workdir=tmp_path,
                        codec="int8+lossless", reply_codec="fp16").to_dict()
    assert report["codec"] == "int8+lossless" and report["reply_codec"] == "fp16"
    sending = [p for p in report["sweep"] if p["bytes"] > 0]
    assert sending
    for point in sending:
        assert point["ok"] == 2 and point["outputs_match"] is True  # within what the codec was measured to change
        plain = plan.candidates[point["cut_id"]].predicted
        # Its coded bytes cross faster than float32's; the board's encoding is priced on top (on LeNet's small
        # tensors that costs more than it saves).
        assert point["predicted"]["transfer_s"] < plain.transfer_s
        assert point["predicted"]["device_s"] > plain.device_s + plain.encode_s
    with pytest.raises(SplitnnError, match="describe themselves"):
        sweep_cuts(lenet, plan, settings_for(18.88e6, 0.01), top=1, requests=1, workdir=tmp_path, codec="int8:calibrated")

"""The emulated board is the profiled board: each part takes what the device profile predicts for it."""
from __future__ import annotations

import pytest

import splitnn
from splitnn.onnxsplit.measure.emulated_board import calibrate


def test_calibration_times_the_part_and_compares_it_with_the_prediction():
    calls = []
    fast = calibrate(lambda: calls.append(1), predicted_s=0.05, runs=3)
    assert len(calls) == 4  # one warm-up, then the timed runs
    assert fast.runs == 3 and 0 <= fast.host_s < 0.05 and not fast.host_slower and fast.factor > 1
    slow = calibrate(lambda: None, predicted_s=1e-12)
    assert slow.host_slower and slow.factor == 1.0  # a board faster than this host: no wait, and it is said
    # An empty part (all on the server): the profile predicts 0 s, and this host is not "slower" than that
    # (issue 30, item 8: run-bench said `this host is slower` of a 0.00 ms part).
    empty = calibrate(lambda: None, predicted_s=0.0)
    assert not empty.host_slower and empty.factor == 1.0


@pytest.mark.parametrize("cut", ["averagepool2_out", None])  # a split, and all on the device (no server part)
def test_every_part_and_baseline_takes_at_least_its_prediction(cut, sample_path, tmp_path):
    link = dict(cut=cut) if cut else dict(link="cat1", bandwidth="200kbit")  # a link too slow to send
    plan = splitnn.partition(sample_path("lenet5"), tmp_path / "plan", **link).to_dict()
    assert bool(plan["cut"]["tensors"]) == bool(cut)
    report = splitnn.run_bench(tmp_path / "plan", requests=3).to_dict()
    predicted = plan["predicted"]["device_s"]
    calibration = report["slowdown"]["device_part"]
    assert report["slowdown"]["source"] == "calibrated" and calibration["predicted_s"] == predicted
    # Each run waits until the prediction has passed (this host is faster than a rockpro64 on LeNet-5).
    assert not calibration["host_slower"] and calibration["host_s"] < predicted
    assert all(s >= predicted for s in report["samples"]["device_s"])
    baselines = report["baselines"]
    assert baselines["device_calibration"]["predicted_s"] == baselines["predicted_all_device"]["device_s"]
    assert baselines["all_device_s"] >= baselines["predicted_all_device"]["device_s"]
    assert baselines["predicted_all_server"]["device_s"] == 0

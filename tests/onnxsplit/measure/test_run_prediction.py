"""run-bench predicts for what it runs: the link it emulates and the server it really uses (issue 30, item 3)."""
from __future__ import annotations

import onnx
import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.plan_file import model_path, read_vertical_plan
from splitnn.onnxsplit.measure.run_prediction import emulated_link, predict_run
from splitnn.onnxsplit.measure.vertical import BenchOptions, run_bench
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.runtime.link_emulator import settings_for
from splitnn.onnxsplit.runtime.server import server_part_path
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from splitnn.sample_models.catalog import build_sample
from tests.helpers import MTCNN_ONET, packaged_model


def _split(model, shapes, outdir, link="4g"):
    analysis = analyze(load_graph(model, shapes))
    middle = [cut for cut in analysis.cuts if len(cut.tensors) == 1][len(analysis.cuts) // 2]
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link(link), "latency",
                      forced_tensors=middle.tensors)
    write_split(analysis, plan, outdir, ort_format=False)
    return read_vertical_plan(outdir)


@pytest.fixture(scope="module")
def onet_split(tmp_path_factory):
    package, relative, shapes = MTCNN_ONET
    folder = tmp_path_factory.mktemp("onet") / "split"
    return _split(packaged_model(package, relative), shapes, folder), folder


def test_priced_with_the_plans_own_server_and_link_the_run_is_the_plan(onet_split):
    """The same formulas over the server part's own graph give the plan's figures back."""
    plan, folder = onet_split
    same = settings_for(plan.link.uplink_bps, plan.link.rtt_s, downlink_bps=plan.link.down_bps)
    run = predict_run(plan, same, server_part_path(folder), plan.server_profile, None)
    assert run is not None and run.differs == ("server",)
    for stage in ("device_s", "encode_s", "transfer_s", "server_s", "total_s", "throughput_fps"):
        assert getattr(run.predicted, stage) == pytest.approx(getattr(plan.predicted, stage), rel=1e-9), stage


def test_another_link_is_priced_as_emulated(onet_split):
    plan, folder = onet_split
    wifi = settings_for(20e6, 0.010, downlink_bps=40e6)
    run = predict_run(plan, wifi, server_part_path(folder), plan.server_profile, None)
    up, down = plan.predicted.up_bytes, plan.predicted.down_bytes
    assert up and down and "link" in run.differs
    assert run.predicted.transfer_s == pytest.approx(up * 8 / 20e6 + down * 8 / 40e6 + 0.010)
    assert plan.predicted.transfer_s != pytest.approx(run.predicted.transfer_s)


def test_a_trace_is_priced_at_its_time_weighted_mean_of_one_over_rate():
    link = emulated_link(load_link("4g"), settings_for(None, 0.05, trace=[(0, 50e6), (4, 1e6), (8, 1e6)]))
    assert link.uplink_bps == pytest.approx(8 / (4 / 50e6 + 4 / 1e6))
    assert link.rtt_s == pytest.approx(0.05)


def test_the_bench_reports_both_and_the_bytes_the_plan_priced_are_what_crossed(tmp_path):
    model = tmp_path / "lenet5.onnx"
    onnx.save(build_sample("lenet5"), model)
    plan = _split(model, None, tmp_path / "split", link="3g")
    report = run_bench(tmp_path / "split", settings_for(100e6, 0.002), BenchOptions(requests=2, baselines=False))
    assert report.ok == 2 and report.this_run is not None
    assert report.predicted == plan.predicted
    assert report.this_run.differs == ("server", "link")
    assert plan.predicted.up_bytes and plan.predicted.down_bytes
    assert report.bytes_per_request.up == plan.predicted.up_bytes
    assert report.bytes_per_request.down == plan.predicted.down_bytes
    assert "rockpro64 -> 3g" in report.planned_for and "cloud-cpu" in report.planned_for


def test_the_all_on_server_baseline_is_priced_as_the_plan_prices_cut_0(onet_split):
    """With the plan's own server and link, the whole model over the plain input gives the plan's cut 0 back."""
    plan, folder = onet_split
    same = settings_for(plan.link.uplink_bps, plan.link.rtt_s, downlink_bps=plan.link.down_bps)
    run = predict_run(plan, same, server_part_path(folder), plan.server_profile, None, model_path(folder, plan))
    cut0 = next(c.predicted for c in plan.candidates if c.id == 0)
    assert run.all_server is not None
    for stage in ("transfer_s", "server_s", "total_s"):
        assert getattr(run.all_server, stage) == pytest.approx(getattr(cut0, stage), rel=1e-9), stage


def test_nothing_differs_where_nothing_is_sent_over_the_plans_link(onet_split):
    plan, _ = onet_split
    same = settings_for(plan.link.uplink_bps, plan.link.rtt_s, downlink_bps=plan.link.down_bps)
    run = predict_run(plan, same, None, plan.server_profile, None)
    assert run.differs == () and run.all_server is None and run.shared_cores_s is None

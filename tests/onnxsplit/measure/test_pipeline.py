"""run-bench on a pipeline plan (issue 33, item 5): a process per stage, each link emulated, the answer back."""
from __future__ import annotations

import re

import numpy as np
import pytest

import splitnn
from splitnn.onnxsplit.core.errors import SplitnnError
from tests.onnxsplit.pipeline.test_planning import machines_file


@pytest.fixture(scope="module")
def three_stages(sample_path, tmp_path_factory):
    """AlexNet at 64 over two small boards and a server, for a stream: every machine runs a stage."""
    folder = tmp_path_factory.mktemp("pipe")
    machines_file(folder, [("a", "rockpro64", 'memory = "60MB"\nsource = true'), ("b", "rockpro64", 'memory = "60MB"'),
                           ("c", "cloud-cpu", "")], [("a", "b", "wifi"), ("b", "c", "wifi"), ("a", "c", "4g")])
    plan = splitnn.partition(sample_path("alexnet", 64), folder / "out", machines=folder / "machines.toml",
                             objective="throughput")
    return folder / "out", plan


def test_every_stage_runs_as_a_process_and_the_answer_matches(three_stages):
    folder, plan = three_stages
    report = splitnn.run_bench(folder, requests=3, stream=True)
    assert report.outputs_match is True and report.requests == 3
    assert [s.machine for s in report.stages] == [s.machine for s in plan.stages]
    # Every stage is held at least to its predicted time, so no stage and no request can be faster than predicted.
    assert all(s.measured_s >= s.predicted_s for s in report.stages)
    assert report.latency_p50_s >= sum(s.compute_s for s in plan.stages)
    # Each hop, then the answer's route as one, beside its prediction; a hop waits at least its half round trip.
    assert [(h.sender, h.receiver) for h in report.hops][:len(plan.hops)] == [(h.sender, h.receiver) for h in plan.hops]
    assert len(report.hops) == len(plan.hops) + (1 if plan.reply else 0)
    assert all(h.measured_s > 0 for h in report.hops)
    assert report.stream_fps is not None and report.stream_fps > 0
    assert report.run_predicted_latency_s is not None and report.run_predicted_latency_s >= plan.predicted.latency_s
    assert len(report.host_s) == len(plan.stages)
    # Both baselines run in the same bench, planned again from the model: the two-machine plan partition
    # compared with (the source alone does not fit its 60 MB), verified and held to its predictions as the plan is.
    assert plan.source_alone is None and plan.two_machines is not None
    assert [b.name for b in report.baselines] == ["two machines"]
    assert report.baselines_left_out == ("source alone: no such plan fits the machines' memory",)
    two = report.baselines[0]
    assert (two.machines, two.predicted_latency_s) == (plan.two_machines.machines, plan.two_machines.latency_s)
    assert two.outputs_match is True and two.stream_fps is not None and two.stream_fps > 0
    assert two.run_predicted_latency_s is not None and two.latency_p50_s >= two.predicted_latency_s


def test_link_options_are_refused_on_a_pipeline_plan(three_stages):
    folder, _ = three_stages
    with pytest.raises(SplitnnError, match=re.escape("--link applies to a split over one emulated link")):
        splitnn.run_bench(folder, link="wifi")
    with pytest.raises(SplitnnError, match="apply to tile plans"):
        splitnn.run_bench(folder, workers=2)


@pytest.fixture(scope="module")
def roomy_source(sample_path, tmp_path_factory):
    """AlexNet at 64 over a board that could hold it all and a second board on WiFi, for a stream: two stages."""
    folder = tmp_path_factory.mktemp("roomy")
    machines_file(folder, [("a", "rockpro64", "source = true"), ("b", "rockpro64", "")], [("a", "b", "wifi")])
    plan = splitnn.partition(sample_path("alexnet", 64), folder / "out", machines=folder / "machines.toml",
                             objective="throughput")
    assert plan.source_alone is not None and len(plan.stages) == 2, plan.stages
    return folder / "out", plan


def test_a_stage_killed_mid_stream_leaves_no_request_unaccounted(roomy_source):
    """Issue 33, item 6: the last stage's process killed once half the stream is answered. No hang; every request
    is answered or failed; with failover the source answers alone whatever is offered after it saw the drop."""
    folder, plan = roomy_source
    last = plan.stages[-1].machine
    for failover in (False, True):
        report = splitnn.run_bench(folder, requests=8, stream=True, kill_stage=last, failover=failover)
        drop = report.drop
        assert drop is not None and drop.stage == last and drop.killed_after_answers >= 4
        assert drop.unaccounted == 0
        assert drop.answered + drop.answered_alone + drop.failed + drop.not_sent == 8 and drop.answered >= 4
        if failover:
            assert drop.failed_after_drop == 0
        else:
            assert drop.answered_alone == 0


def test_with_failover_the_rest_of_the_stream_goes_through_a_plan_over_the_machines_left(three_stages):
    """Issue 33, item 6: the source cannot hold the model (60 MB), so when the middle stage's process is killed,
    the model is planned again over the machines left (the source and the server, over 4G), and every request
    offered after the drop is answered through those stages; none is unaccounted for. Where the machines left
    cannot hold the model (the server killed: two boards of 60 MB), the report says why."""
    folder, plan = three_stages
    middle = plan.stages[1].machine
    report = splitnn.run_bench(folder, requests=120, stream=True, kill_stage=middle, failover=True)
    drop = report.drop
    assert drop is not None and drop.unaccounted == 0 and drop.failed_after_drop == 0, drop
    assert drop.replanned == (plan.stages[0].machine, plan.stages[2].machine) and drop.replan_error is None, drop
    assert drop.answered_alone == 0 and drop.answered_replanned >= 1
    assert drop.answered + drop.answered_replanned + drop.failed + drop.not_sent == 120
    import contextlib

    from splitnn.onnxsplit.artifacts.plan_file import read_pipeline_plan
    from splitnn.onnxsplit.measure.pipeline import _Answers, _Replanner

    answers = _Answers()
    with contextlib.ExitStack() as stack:
        again = _Replanner(folder, read_pipeline_plan(folder), plan.stages[-1].machine, answers, 1.0, stack)
        again._run()  # what the drill's thread runs once the drop is seen
    answers.close()
    assert again.ready.is_set() and again.send is None and not again.machines
    assert "give a machine more memory" in (again.error or ""), again.error


def test_a_drop_needs_a_stream_and_a_stage_process(three_stages):
    folder, plan = three_stages
    with pytest.raises(SplitnnError, match="add --stream"):
        splitnn.run_bench(folder, kill_stage=plan.stages[-1].machine)
    with pytest.raises(SplitnnError, match="names no stage process of this plan"):
        splitnn.run_bench(folder, stream=True, kill_stage=plan.stages[0].machine)


def test_the_stream_is_timed_once_the_pipeline_is_full():
    from splitnn.onnxsplit.measure.pipeline import steady_fps

    # Three answers while the pipeline fills, then one every 0.25 s: 4 frames/s, not the fill's pace.
    times = [0.0, 0.1, 0.2, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5]
    assert steady_fps(times, 3) == pytest.approx(4.0)
    assert steady_fps(times[:5], 3) == pytest.approx(4 / 1.25)  # too few after the fill: every answer counts


def test_a_dilated_run_holds_every_stage_and_divides_its_figures_back(three_stages, sample_path, tmp_path):
    """--time-scale K: every stage held to K times its prediction and every link K times slower, then every figure
    divided by K, so that each stage still takes at least its prediction in the plan's time; K below 1 is refused,
    and so is K on a plan that is not a pipeline."""
    folder, plan = three_stages
    report = splitnn.run_bench(folder, requests=2, stream=True, baselines=False, time_scale=2.0)
    assert report.time_scale == 2.0 and report.outputs_match is True and not report.baselines
    assert all(s.measured_s >= s.predicted_s for s in report.stages)
    assert report.latency_p50_s >= sum(s.compute_s for s in plan.stages)
    assert report.stream_fps is not None and report.stream_fps > 0
    with pytest.raises(SplitnnError, match="--time-scale 0.5 must be from 1 to 100"):
        splitnn.run_bench(folder, requests=1, time_scale=0.5)
    with pytest.raises(SplitnnError, match="--time-scale inf must be from 1 to 100"):
        splitnn.run_bench(folder, requests=1, time_scale=float("inf"))
    splitnn.partition(sample_path("lenet5"), tmp_path / "split", cut="averagepool2_out")
    with pytest.raises(SplitnnError, match="--time-scale applies to pipeline plans"):
        splitnn.run_bench(tmp_path / "split", requests=1, time_scale=2.0)


def test_the_time_scale_dilates_each_hold_and_link_and_the_report_divides_it_back(three_stages):
    """The arithmetic of --time-scale, without timing: each stage held to K times its prediction, each link K
    times slower with K times the delay; frames whose every interval took K times a duration are reported at
    that duration, and this host's times at theirs over K."""
    from splitnn.onnxsplit.measure.pipeline import _report, _run_figures, hop_settings
    from splitnn.onnxsplit.runtime.stage import TIMES, StageRunner
    from splitnn.onnxsplit.runtime.wire import REQUEST, Frame

    folder, plan = three_stages
    hop = plan.hops[0]
    one, two = hop_settings(plan, hop.sender, hop.receiver), hop_settings(plan, hop.sender, hop.receiver, 2.0)
    assert two.uplink_bps == one.uplink_bps / 2 and two.downlink_bps == one.downlink_bps / 2
    assert two.delay_s == 2 * one.delay_s
    machine = plan.stages[1].machine
    assert StageRunner(folder, plan, machine, hold=True, scale=2.0).hold_s == 2 * plan.stages[1].compute_s
    # Stage k had the frame at 10k, ran for k + 1 and sent it 0.5 later (all times 2x): reported undilated.
    rows = np.array([[2 * 10 * k, 2 * (10 * k + k + 1), 2 * (10 * k + k + 1.5)] for k in range(len(plan.stages))])
    frames = [(float(rows[-1, 2] + 2 * 3.0), Frame(REQUEST, 1, tensors={TIMES: rows}))]
    report = _report(plan, str(folder), 1, [1.0], None, frames, (None, None), 2.0)
    assert [s.measured_s for s in report.stages] == [k + 1 for k in range(len(plan.stages))]
    assert [h.measured_s for h in report.hops[:len(plan.hops)]] == [10 * (k + 1) - (10 * k + k + 1.5)
                                                                     for k in range(len(plan.hops))]
    assert report.hops[-1].measured_s == 3.0 and report.time_scale == 2.0
    slow_host = [10 * s.compute_s for s in plan.stages]  # this host 10x slower than every machine
    assert _run_figures(plan, slow_host, 10.0)[0] == pytest.approx(_run_figures(plan, [0.0] * len(slow_host))[0])

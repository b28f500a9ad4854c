"""run-bench's comparison of the split with its baselines, on the plan's objective."""
from __future__ import annotations

from dataclasses import replace

import pytest

from splitnn.onnxsplit.measure.split_report import Baselines, Percentiles, StreamReport
from splitnn.onnxsplit.measure.vertical import versus_baselines

BASELINES = Baselines(all_device_s=0.080, all_server_s=0.275, all_server=None, requests=10, all_device_fps=12.5,
                      all_server_fps=4.0)


def _stream(fps: float) -> StreamReport:
    return StreamReport(frames=10, ok=10, errors=0, error_messages=[], offered_fps=None, throughput_fps=fps,
                        bound_fps=fps, ratio=1.0, stage_periods_s={}, bottleneck="device_s",
                        latency_s=Percentiles(0.1, 0.1), wall_s=1.0)


def test_latency_is_compared_end_to_end():
    versus = versus_baselines("latency", 0.040, None, BASELINES)
    assert versus.measure.startswith("end-to-end")
    assert versus.vs_all_device == pytest.approx(2.0) and versus.vs_all_server == pytest.approx(6.875)


def test_throughput_with_a_stream_is_compared_in_frames_per_second():
    versus = versus_baselines("throughput", 0.070, _stream(25.0), BASELINES)
    assert versus.measure == "frames per second"
    assert versus.vs_all_device == pytest.approx(2.0) and versus.vs_all_server == pytest.approx(6.25)


def test_without_a_stream_throughput_falls_back_to_latency():
    versus = versus_baselines("throughput", 0.100, None, replace(BASELINES, all_device_fps=None, all_server_fps=None))
    assert versus.measure.startswith("end-to-end") and versus.vs_all_device == pytest.approx(0.8)


def test_no_baselines_no_comparison():
    assert versus_baselines("latency", 0.05, None, None) is None
    assert versus_baselines("latency", 0.05, None, replace(BASELINES, all_server_s=None)).vs_all_server is None

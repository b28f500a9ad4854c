"""What the command line adds to a vertical split's jobs (tests/onnxsplit/vertical test the jobs through the API):
run-bench's --plot of an adaptive run, its option checks, and update-weights' note on the device's .ort."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

import splitnn
from tests.helpers import assert_bad_input, run_cli


def test_run_bench_plots_an_adaptive_plan_s_latency_over_time(sample_path, tmp_path):
    splitnn.partition(sample_path("lenet5"), tmp_path / "ad", link="4g", adaptive=True,
                      bandwidth_range="0.1Mbit-100Mbit", ort_format=False)
    (tmp_path / "drop.csv").write_text("time_s,mbps\n0,200\n1,0.2\n")
    proc = run_cli("run-bench", "ad", "--trace", "drop.csv", "--rtt", "10ms", "--requests", "4", "--plot",
                   "timeline.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the latency-over-time picture


def test_run_bench_refuses_a_duration_of_0(tmp_path):
    """--duration is checked as it is read, before the folder is."""
    assert_bad_input(run_cli("run-bench", str(tmp_path), "--duration", "0"), "--duration")


def test_update_weights_says_the_ort_is_kept(sample_path, tmp_path):
    model = sample_path("lenet5")
    splitnn.partition(model, tmp_path / "plan", cut="averagepool2_out")
    retrained = onnx.load(str(model))
    for tensor in retrained.graph.initializer:
        if tensor.name in ("conv1.weight", "fc3.weight"):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(3), tensor.name))
    onnx.save_model(retrained, str(tmp_path / "retrained.onnx"))
    proc = run_cli("update-weights", str(tmp_path / "plan"), "--from", str(tmp_path / "retrained.onnx"))
    assert proc.returncode == 0, proc.stderr
    assert "the .ort is kept" in proc.stdout


def test_the_cli_says_why_the_ort_was_rebuilt():
    from splitnn.cli.update_weights import _ort_note

    assert "folded c1.w into other weights" in _ort_note(True, ("c1.w",))
    assert "did not reproduce" in _ort_note(True, ())
    assert "is kept" in _ort_note(False, ()) and _ort_note(None, ()) == ""

"""Bad input from a user's own folder: one line on stderr, exit code 2, nothing half-written (issue 18's list)."""
from __future__ import annotations

import shutil

import pytest

from tests.helpers import assert_bad_input, run_cli


@pytest.fixture()
def workdir(tmp_path, sample_path):
    shutil.copy(sample_path("lenet5"), tmp_path / "lenet.onnx")
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path


@pytest.mark.parametrize("args, says", [
    (["partition", "lenet.onnx", "-o", "/proc/x"], "cannot write into '/proc'"),
    (["partition", "lenet.onnx", "-o", "a_file/sub"], "cannot write into 'a_file'"),
    (["samples", "build", "lenet5", "-o", "/proc/x.onnx"], "cannot write into '/proc'"),
    (["analyze", "lenet.onnx", "--csv", "a_file/nodes.csv"], "cannot write into 'a_file'"),
])
def test_an_output_that_cannot_be_written(workdir, args, says):
    assert_bad_input(run_cli(*args, cwd=workdir), says)
    assert sorted(p.name for p in workdir.iterdir()) == ["a_file", "lenet.onnx"]  # nothing half-written


def test_a_disk_that_fills_up_mid_write(workdir, sample_path):
    """Writing a plan's weights fails part way (a file-size limit stands in for a full disk): one line, and no
    plan folder nor temporary file is left behind."""
    shutil.copy(sample_path("alexnet", 64), workdir / "alexnet.onnx")
    before = sorted(p.name for p in workdir.iterdir())
    proc = run_cli("partition", "alexnet.onnx", "-o", "plan", cwd=workdir, max_file_bytes=4_000_000)
    assert_bad_input(proc, "File too large")
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_timeouts_must_be_positive_and_a_deleted_device_part_is_named(workdir):
    proc = run_cli("partition", "lenet.onnx", "-o", "plan", "--cut", "averagepool2_out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert_bad_input(run_cli("run-bench", "plan", "--timeout", "-1", cwd=workdir), "--timeout")
    assert_bad_input(run_cli("device", "plan", "--server", "127.0.0.1:9", "--random", "1", "--timeout", "-1",
                             cwd=workdir), "--timeout")
    (workdir / "plan" / "device" / "model.ort").unlink()
    assert_bad_input(run_cli("device", "plan", "--server", "127.0.0.1:9", "--random", "1", cwd=workdir),
                     "'plan/device/model.ort' is missing")
    assert_bad_input(run_cli("run-bench", "plan", "--requests", "1", cwd=workdir), "is missing")


def test_assumptions_are_said_and_never_a_silent_zero(workdir):
    """issue 18, item 8: units stated for bare numbers, no silent 0 ms round trip, no echo server."""
    from tests.helpers import run_cli as cli

    assert_bad_input(cli("partition", "lenet.onnx", "-o", "p", "--bandwidth", "12", cwd=workdir), "needs --rtt")
    proc = cli("partition", "lenet.onnx", "-o", "p", "--bandwidth", "12", "--rtt", "40", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "--bandwidth 12 taken as 12 Mbit/s" in proc.stderr and "--rtt 40 taken as 40 ms" in proc.stderr
    import json

    assert json.loads(proc.stdout)["link"]["rtt_s"] == 0.04
    proc = cli("partition", "lenet.onnx", "-o", "plan4g", "--link", "4g", "--cut", "averagepool2_out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    proc = cli("run-bench", "plan4g", "--bandwidth", "12Mbit", "--requests", "1", "--no-baselines",
               "--device-slowdown", "1", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    link = json.loads(proc.stdout)["link"]
    assert link["uplink_bps"] == 12e6 and abs(link["rtt_s"] - 0.05) < 1e-9  # the plan's 4G round trip is kept
    proc = cli("partition", "lenet.onnx", "-o", "alldevice", "--cut", "", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert_bad_input(cli("serve", "alldevice", "--port", "0", cwd=workdir), "nothing to serve")


def test_damaged_parts_and_an_unknown_scheduler(workdir):
    """issue 18: a truncated weights.bin in serve and update-weights, run-bench --scheduler nonsense."""
    from tests.helpers import run_cli as cli

    proc = cli("partition", "lenet.onnx", "-o", "plan", "--cut", "averagepool2_out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    for side in ("server", "device"):
        blob = workdir / "plan" / side / "weights.bin"
        blob.write_bytes(blob.read_bytes()[:100])
    # Named at start by its SHA-256 (issue 15, item 3), before onnxruntime sees it.
    assert_bad_input(cli("serve", "plan", "--port", "0", cwd=workdir),
                     "'plan/server/weights.bin' is not the file partition wrote")
    assert_bad_input(cli("update-weights", "plan", "--from", "lenet.onnx", cwd=workdir), "are damaged")
    proc = cli("partition", "lenet.onnx", "-o", "tiles", "--strategy", "tiles", "--nodes", "2", "--grid", "1x2",
               cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert_bad_input(cli("run-bench", "tiles", "--scheduler", "nonsense", cwd=workdir),
                     "cannot reach the Dask scheduler at nonsense")


def test_an_input_shape_that_cannot_fit_is_refused_before_allocating(workdir):
    for command in (["partition", "lenet.onnx", "-o", "big"], ["profile", "lenet.onnx", "-o", "big.toml"]):
        assert_bad_input(run_cli(*command, "--input-shape", "input:1x1x10000000x10000000", cwd=workdir),
                         "would take 363.8 TiB")


def test_the_tests_keep_their_own_host_profile_cache():
    import os
    from pathlib import Path

    assert "splitnn-test-cache-" in os.environ["SPLITNN_CACHE_DIR"]
    assert not str(Path(os.environ["SPLITNN_CACHE_DIR"])).startswith(str(Path.home() / ".cache"))


def test_every_artifact_is_checked_by_its_sha256(workdir):
    """issue 15, item 3: plan.json records a SHA-256 per file; a blob of the right size with other bytes is refused
    by the side that would run it, naming the file; update-weights writes the new hashes."""
    import json

    from tests.helpers import run_cli as cli

    proc = cli("partition", "lenet.onnx", "-o", "plan", "--cut", "averagepool2_out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((workdir / "plan" / "plan.json").read_text())["artifact_sha256"]
    assert {"device/model.onnx", "device/model.ort", "device/weights.bin", "server/model.onnx",
            "server/weights.bin"} <= set(recorded) and "plan.json" not in recorded
    blob = workdir / "plan" / "device" / "weights.bin"
    original = blob.read_bytes()
    blob.write_bytes(original[:-4] + b"\x00\x00\x80\x7f")  # the same size, the last weight now +inf
    assert_bad_input(cli("device", "plan", "--server", "127.0.0.1:9", "--random", "1", cwd=workdir),
                     "'plan/device/weights.bin' is not the file partition wrote")
    assert_bad_input(cli("run-bench", "plan", "--requests", "1", cwd=workdir), "'plan/device/weights.bin'")
    blob.write_bytes(original)
    proc = cli("update-weights", "plan", "--from", "lenet.onnx", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((workdir / "plan" / "plan.json").read_text())["artifact_sha256"] == recorded  # same weights
    proc = cli("run-bench", "plan", "--requests", "1", "--no-baselines", cwd=workdir)
    assert proc.returncode == 0, proc.stderr


def test_a_server_other_machines_reach_needs_a_token(workdir):
    """issue 15, item 1: no token on a non-loopback address unless --insecure; a missing or empty token file."""
    from tests.helpers import run_cli as cli

    proc = cli("partition", "lenet.onnx", "-o", "plan", "--cut", "averagepool2_out", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert_bad_input(cli("serve", "plan", "--host", "0.0.0.0", "--port", "0", cwd=workdir), "give --token-file FILE")
    (workdir / "empty.txt").write_text("\n")
    assert_bad_input(cli("serve", "plan", "--token-file", "empty.txt", cwd=workdir), "'empty.txt' is empty")
    assert_bad_input(cli("device", "plan", "--server", "127.0.0.1:9", "--random", "1", "--token-file", "nope.txt",
                         cwd=workdir), "'nope.txt' cannot be read")

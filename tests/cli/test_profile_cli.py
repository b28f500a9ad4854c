from __future__ import annotations

import json

import pytest

from splitnn.cost_models.catalog import load_device
from tests.helpers import run_cli


def test_profile_writes_a_usable_device_profile(sample_path, tmp_path):
    target = tmp_path / "board.toml"
    model = str(sample_path("resnet18", 64))
    proc = run_cli("profile", model, "-o", str(target), "--runs", "2", "--warmup", "1", "--base", "rockpro64", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {c["name"] for c in report["classes"]} == {"dense_conv", "depthwise_conv", "matmul", "elementwise", "transcendental",
                                                      "strided_softmax", "memory", "weights"}
    timing = report["timings"][0]
    assert timing["runs"] == 2 and timing["level"] == "basic"
    assert sum(len(g["nodes"]) for g in timing["groups"]) + len(timing["eliminated"]) == 69  # ResNet-18's nodes
    board = load_device(str(target))
    assert board.ram_bytes == load_device("rockpro64").ram_bytes  # not measurable: from --base
    assert board.compute_power_w is None  # timing tells nothing about watts: unknown, not the base's 5 W
    assert board.macs_per_s["dense_conv"] == pytest.approx(report["profile"]["macs_per_s"]["dense_conv"], rel=1e-3)
    assert board.weight_bandwidth == pytest.approx(report["profile"]["weight_bytes_per_s"], rel=1e-3)  # kept in the file
    # The codec references are timed where the profile is made, and kept in the file.
    assert board.image_codec_s == pytest.approx(report["profile"]["image_codec_s"], rel=1e-3) and board.image_codec_s > 0
    assert board.array_codec_s == pytest.approx(report["profile"]["array_codec_s"], rel=1e-3) and board.array_codec_s > 0
    # A codec timed where partition runs is scaled to this board by their references, not by DRAM bandwidths.
    from splitnn.cost_models.host import host_profile
    from splitnn.onnxsplit.vertical.codec_check import codec_scales

    here, server = host_profile(), load_device("cloud-cpu")
    assert codec_scales(board, server, "webp:90")[0] == pytest.approx(board.image_codec_s / here.image_codec_s)
    assert codec_scales(board, server, "int8+lossless")[0] == pytest.approx(board.array_codec_s / here.array_codec_s)
    assert codec_scales(server, server)[0] == pytest.approx(here.weight_bandwidth / server.weight_bandwidth)
    # The profile drives a partition.
    proc = run_cli("partition", model, "-o", str(tmp_path / "plan"), "--device", str(target), "--no-ort")
    assert proc.returncode == 0, proc.stderr
    assert "unknown energy on the device" in proc.stdout
    proc = run_cli("partition", model, "-o", str(tmp_path / "energy"), "--device", str(target), "--objective", "energy")
    assert proc.returncode == 2 and "no measured power" in proc.stderr and not (tmp_path / "energy").exists()
    # A power the user measured is kept.
    proc = run_cli("profile", model, "-o", str(tmp_path / "watts.toml"), "--runs", "1", "--compute-watts", "4.2")
    assert proc.returncode == 0, proc.stderr
    assert load_device(str(tmp_path / "watts.toml")).compute_power_w == 4.2


def test_profile_table_and_bad_options(sample_path, tmp_path):
    model = str(sample_path("lenet5"))
    proc = run_cli("profile", model, "-o", str(tmp_path / "b.toml"), "--runs", "1", "--level", "extended")
    assert proc.returncode == 0, proc.stderr
    assert "Fitted profile" in proc.stdout and "dense_conv" in proc.stdout
    for args, message in (
        (["-o", str(tmp_path / "b.txt")], "must name a .toml file"),
        (["-o", str(tmp_path / "b.toml"), "--runs", "0"], "Invalid value for '--runs'"),
        (["-o", str(tmp_path / "b.toml"), "--base", "nano"], "unknown device profile 'nano'"),
    ):
        proc = run_cli("profile", model, *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

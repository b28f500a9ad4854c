from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


def test_partition_json_fields(sample_path, tmp_path):
    outdir = tmp_path / "out"
    proc = run_cli("partition", str(sample_path("resnet18", 64)), "-o", str(outdir), "--link", "3g", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan == json.loads((outdir / "plan.json").read_text())
    assert {"tensors", "bytes"} <= set(plan["cut"])
    assert {"device_s", "transfer_s", "server_s", "total_s"} <= set(plan["predicted"])
    assert len(plan["candidates"]) == 70 and all("feasible" in c and "predicted" in c for c in plan["candidates"])
    assert plan["link"]["uplink_bps"] == 1.1e6 and plan["device_profile"]["name"] == "rockpro64"
    assert plan["verification"]["passed"] and plan["verification"]["max_abs_err"] < 1e-4
    for rel in plan["artifacts"].values():
        assert (outdir / rel).is_file()


def test_partition_table_with_custom_link(sample_path, tmp_path):
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(tmp_path / "o"), "--bandwidth", "100Mbit",
                   "--rtt", "5ms", "--no-ort")
    assert proc.returncode == 0, proc.stderr
    assert "Chosen cut" in proc.stdout and "verified" in proc.stdout and "custom 100 Mbit/s" in proc.stdout
    assert not (tmp_path / "o" / "device" / "model.ort").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--device", "nano"], "unknown device profile"),
        (["--bandwidth", "fast"], "bad bandwidth"),
        (["--rtt", "soon"], "bad duration"),
        (["--cut", "no_such_tensor"], "no cut sends exactly"),
        (["--max-transfer-bytes", "lots"], "bad byte count"),
        (["--objective", "speed"], "--objective"),
    ],
)
def test_bad_options(sample_path, tmp_path, args, fragment):
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(tmp_path / "o"), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_infeasible_memory_exits_2(sample_path, tmp_path):
    profile = tmp_path / "tiny.toml"
    profile.write_text(
        'name = "tiny"\n[compute]\ndense_conv_gmac_per_s = 1\ndepthwise_conv_gmac_per_s = 1\nmatmul_gmac_per_s = 1\n'
        'elementwise_gmac_per_s = 1\n[memory]\nbandwidth_gb_per_s = 1\nram_gb = 0.000001\n'
    )
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(tmp_path / "o"), "--device", str(profile))
    assert proc.returncode == 2 and "no cut is feasible: device memory rules out" in proc.stderr

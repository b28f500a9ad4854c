"""The host profile: measured again when the kept one is stale or was measured under load; power unknown."""
from __future__ import annotations

import os

import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.cost_models.host import MAX_AGE_S, PROBES, is_stale
from splitnn.cost_models.profiles import device_from_dict, device_to_toml, read_toml
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical.planning import plan_split


def test_a_kept_host_profile_is_measured_again_when_stale_or_taken_under_load():
    now, cpus = 1_000_000.0, os.cpu_count() or 1
    fresh = {"measured_at": now - 60, "load_per_core": 0.1, "cpus": cpus, "level": DEVICE_PART_LEVEL, "probes": PROBES}
    assert is_stale(fresh, now, load_now=0.1) == ""
    assert "week" in is_stale({**fresh, "measured_at": now - MAX_AGE_S - 1}, now, 0.1)
    assert "cores" in is_stale({**fresh, "cpus": cpus + 1}, now, 0.1)
    # Measured at onnxruntime's default level (as before), where a depthwise convolution runs 3x faster than in a part.
    assert "optimization level" in is_stale({k: v for k, v in fresh.items() if k != "level"}, now, 0.1)
    # Measured by the micro-benchmarks before depthwise rows and the bandwidths in and out of the caches.
    assert "older set" in is_stale({k: v for k, v in fresh.items() if k != "probes"}, now, 0.1)
    busy = {**fresh, "load_per_core": 1.5}
    assert "under load" in is_stale(busy, now, load_now=0.2)
    assert is_stale(busy, now, load_now=1.0) == ""  # still busy: measuring again would not help
    assert "when" in is_stale({}, now, 0.1)  # written before the record was kept


def test_unmeasured_power_is_unknown_and_energy_is_refused(sample_path, tmp_path):
    host = load_device("host")  # measured into the tests' own cache
    assert host.compute_power_w is None
    from splitnn.cost_models.host import cache_path

    assert read_toml(cache_path(), "cache")["measurement"]["level"] == DEVICE_PART_LEVEL
    assert host.dense_conv_full_channels is not None and host.dense_conv_full_channels >= 16
    # The depthwise rows and the two bandwidths are measured (probes 2), and a profile file keeps them.
    assert host.depthwise_row_overhead is not None and 0 <= host.depthwise_row_overhead <= 1000
    assert host.depthwise_strided_efficiency is not None and 0 < host.depthwise_strided_efficiency <= 1
    assert host.weight_bytes_per_s is not None and host.weight_bytes_per_s > 0
    measured = read_toml(cache_path(), "cache")["compute"]  # every class has its own probe (probes 4)
    assert {f"{c}_gmac_per_s" for c in ("elementwise", "transcendental", "strided_softmax")} <= set(measured)
    path = tmp_path / "board.toml"
    path.write_text(device_to_toml(host))
    kept = device_from_dict(read_toml(path, "p"), "p")
    assert (kept.depthwise_row_overhead, kept.depthwise_strided_efficiency) == pytest.approx(
        (host.depthwise_row_overhead, host.depthwise_strided_efficiency), rel=1e-3)
    assert kept.weight_bandwidth == pytest.approx(host.weight_bandwidth, rel=1e-3)
    assert device_from_dict(read_toml(path, "p"), "p").compute_power_w is None  # and it stays unknown in a file
    analysis = analyze(load_graph(sample_path("lenet5")))
    plan = plan_split(analysis, host, load_device("cloud-cpu"), load_link("4g"), "latency")
    assert all(c.predicted.energy_j is None for c in plan.candidates)  # never 0 J
    with pytest.raises(SplitnnError, match="no measured power"):
        plan_split(analysis, host, load_device("cloud-cpu"), load_link("4g"), "energy")
    board = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "energy")
    assert board.chosen.predicted.energy_j > 0




def test_the_single_thread_host_profile_is_measured_on_one_thread_and_kept_apart():
    """`host-1thread` (what each Dask tile worker runs: onnxruntime on one thread) is measured into its own cache
    file, and on a machine of more than one core its dense convolutions run slower than the default profile's."""
    from splitnn.cost_models.host import SINGLE_THREAD, cache_path

    one = load_device(SINGLE_THREAD)
    every = load_device("host")
    assert one.name == SINGLE_THREAD and every.name == "host"
    assert cache_path(1).name == "host-1thread.toml" and cache_path(1).is_file() and cache_path().is_file()
    if (os.cpu_count() or 1) > 1:
        assert one.macs_per_s["dense_conv"] < every.macs_per_s["dense_conv"]

from __future__ import annotations

import pytest

from splitnn.cost_models.catalog import builtin_devices, load_device, load_link
from splitnn.onnxsplit.core.errors import SplitnnError


def test_builtin_profiles_load():
    assert {"rockpro64", "raspberry-pi-4", "cloud-cpu"} <= set(builtin_devices())
    board = load_device("rockpro64")
    assert board.ram_bytes == 4_000_000_000 and board.usable_ram_bytes == 3_200_000_000
    assert board.memory_bytes_per_s == 2.8e9
    links = {name: load_link(name) for name in ("cat1", "3g", "4g", "wifi")}
    assert [links[n].uplink_bps for n in ("cat1", "3g", "4g", "wifi")] == [0.13e6, 1.1e6, 5.85e6, 18.88e6]
    # Radio model: 4G at 5.85 Mbit/s draws 438.39 * 5.85 + 1288.04 mW.
    assert links["4g"].radio_watts() == pytest.approx((438.39 * 5.85 + 1288.04) / 1000)
    assert links["wifi"].transfer_seconds(1_000_000) == pytest.approx(8 / 18.88 + 0.010)


def test_custom_link_and_overrides():
    link = load_link(None, 2e6, 0.03)
    assert link.transfer_seconds(250_000) == pytest.approx(1.0 + 0.03)
    assert load_link("3g", None, 0.2).rtt_s == 0.2


def test_profile_mistakes(tmp_path):
    with pytest.raises(SplitnnError, match="unknown device profile 'nano'"):
        load_device("nano")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[compute]\ndense_conv_gmac_per_s = 1\n')
    with pytest.raises(SplitnnError, match="lacks or mistypes"):
        load_device(str(bad))
    with pytest.raises(SplitnnError, match="unknown link"):
        load_link("5g")


def test_host_profile_is_measured_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITNN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("splitnn.cost_models.host.load_per_core", lambda: 0.0)  # a quiet machine: the cache holds
    first = load_device("host")
    assert (tmp_path / "host.toml").is_file()
    assert all(rate > 1e8 for rate in first.macs_per_s.values())  # any real CPU exceeds 0.1 GMAC/s
    assert first.memory_bytes_per_s > 1e8 and first.ram_bytes > 1e9
    # The codec references, timed here: a 224x224 WebP encode and a 200 kB int8+lossless frame take between
    # 10 microseconds and a second on any CPU.
    assert 1e-5 < first.image_codec_s < 1.0 and 1e-5 < first.array_codec_s < 1.0
    assert load_device("host") == first  # the second call reads the cache


def test_a_codec_is_scaled_by_its_reference_where_both_profiles_time_it(tmp_path):
    """cost_models.latency.codec_time_scale: the ratio of the matching codec reference (cost_models/codec_probe)
    when the board's profile and this machine's both have it; else the ratio of their DRAM bandwidths."""
    from dataclasses import replace

    from splitnn.cost_models.latency import codec_time_scale
    from splitnn.cost_models.profiles import device_from_dict, device_to_toml, read_toml

    here = replace(load_device("rockpro64"), name="here", weight_bytes_per_s=40e9, image_codec_s=0.002,
                   array_codec_s=0.003)
    board = replace(load_device("rockpro64"), image_codec_s=None, array_codec_s=None)  # a profile without them
    assert codec_time_scale(board, here, image=True) == pytest.approx(40e9 / board.weight_bandwidth)
    timed = replace(board, image_codec_s=0.011, array_codec_s=0.024)
    assert codec_time_scale(timed, here, image=True) == pytest.approx(5.5)
    assert codec_time_scale(timed, here, image=False) == pytest.approx(8.0)
    # Kept through the profile's TOML and plan.json's dict.
    path = tmp_path / "board.toml"
    path.write_text(device_to_toml(timed))
    again = device_from_dict(read_toml(path, "profile"), str(path))
    assert (again.image_codec_s, again.array_codec_s) == pytest.approx((0.011, 0.024))
    assert type(timed).from_dict(timed.to_dict()) == timed


def test_the_built_in_boards_carry_codec_references_estimated_from_single_core_ratings():
    """rockpro64 and raspberry-pi-4 carry the codec references their TOML derives: the development machine's
    times (image 2.414 ms, array 3.524 ms) times the ratio of single-thread 7-Zip ratings (4576 MIPS there;
    1755 and 1661 published for the boards), so that their codecs are not priced by DRAM bandwidths (about
    19 times this host for a RockPro64)."""
    from dataclasses import replace

    from splitnn.cost_models.latency import codec_time_scale

    development = replace(load_device("rockpro64"), name="development", image_codec_s=0.002414,
                          array_codec_s=0.003524)
    for name, mips in (("rockpro64", 1755), ("raspberry-pi-4", 1661)):
        board = load_device(name)
        for image in (True, False):
            assert codec_time_scale(board, development, image) == pytest.approx(4576 / mips, rel=0.01)
    assert load_device("cloud-cpu").image_codec_s is None  # assumed rates: no codec figure to estimate from

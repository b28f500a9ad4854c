"""The machines file (issue 33, item 1): machines, groups, the source and the links, and one line per mistake."""
from __future__ import annotations

import re

import pytest

from splitnn.cost_models.machines import read_machines
from splitnn.onnxsplit.core.errors import SplitnnError

GOOD = """
[[machine]]
name = "camera"
profile = "rockpro64"
memory = "1GB"
source = true

[[machine]]
name = "edge"
profile = "edge.toml"

[[machine]]
name = "cloud"
profile = "cloud-cpu"

[[link]]
between = ["camera", "edge"]
bandwidth = "20Mbit"
rtt = "4ms"
downlink = 50

[[link]]
between = ["edge", "cloud"]
preset = "4g"
"""


_ROCKPRO_LIKE = """
name = "edge-box"
description = "an edge box"
[compute]
dense_conv_gmac_per_s = 200.0
depthwise_conv_gmac_per_s = 10.0
matmul_gmac_per_s = 200.0
elementwise_gmac_per_s = 2.0
per_node_overhead_ms = 0.05
[memory]
bandwidth_gb_per_s = 10.0
ram_gb = 8.0
"""


def test_a_machines_file_gives_machines_links_and_the_source(tmp_path):
    (tmp_path / "edge.toml").write_text(_ROCKPRO_LIKE)
    (tmp_path / "m.toml").write_text(GOOD)
    machines = read_machines(tmp_path / "m.toml")
    assert [m.name for m in machines.machines] == ["camera", "edge", "cloud"] and machines.source.name == "camera"
    camera = machines.machine("camera")
    assert camera.profile.ram_bytes == 1_000_000_000 and camera.usable_bytes == 800_000_000  # the 80% rule
    assert machines.machine("edge").profile.name == "edge-box"  # a profile file beside the machines file
    assert machines.bps("camera", "edge") == 20e6 and machines.bps("edge", "camera") == 50e6  # a bare number: Mbit/s
    assert machines.rtt_s("edge", "camera") == pytest.approx(0.004)
    assert machines.bps("camera", "cloud") is None  # no link
    four_g = machines.bps("edge", "cloud")
    assert four_g is not None and 1e6 < four_g < 1e8


BAD = [
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\n', "no machines have source = true"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\ncolour = "red"\n',
     "[[machine]] 1 ('a'): unknown key 'colour'"),
    ('[[machine]]\nname = "a"\nsource = true\n', "[[machine]] 1 ('a'): key 'profile' is missing"),
    ('[[machine]]\nname = "a"\nprofile = "toaster"\nsource = true\n',
     "[[machine]] 1 ('a'): key 'profile': unknown device profile 'toaster'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nmemory = "lots"\nsource = true\n',
     "[[machine]] 1 ('a'): key 'memory'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\ncount = 0\nsource = true\n', "[[machine]] 1 ('a'): key 'count'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "a"\nprofile = "rockpro64"\n',
     "two [[machine]] entries are named 'a'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     'source = true\n', "2 machines have source = true (a, b)"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[link]]\nbetween = ["a", "z"]\npreset = "wifi"\n',
     "[[link]] 1: key 'between' names 'z'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     '[[link]]\nbetween = ["a", "b"]\npreset = "wifi"\nbandwidth = "1Mbit"\n', "[[link]] 1: give either key 'preset'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     '[[link]]\nbetween = ["a", "b"]\nbandwidth = "fast"\nrtt = "5ms"\n', "[[link]] 1: key 'bandwidth': bad bandwidth 'fast'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     '[[link]]\nbetween = ["a", "b"]\npreset = "wifi"\n[[link]]\nbetween = ["b", "a"]\npreset = "4g"\n',
     "two [[link]] entries join a and b"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     '[[link]]\nbetween = ["a", "b"]\npreset = "carrier-pigeon"\n', "[[link]] 1: key 'preset': unknown link"),
    ('[[machines]]\nname = "a"\n', "unknown table 'machines'"),
    ('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n[[machine]]\nname = "b"\nprofile = "rockpro64"\n'
     '[[link]]\nbetween = ["a", "b"]\nbandwidth = "10Mbit"\n', "[[link]] 1: key 'rtt' is missing"),
    ('[[machine]]\nname = "../a"\nprofile = "rockpro64"\nsource = true\n', "key 'name' may hold letters, digits"),
    ('[[machine\n', "is not valid TOML"),
]


@pytest.mark.parametrize("text,says", BAD)
def test_a_bad_machines_file_is_one_line_naming_the_entry_and_the_key(tmp_path, text, says):
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(SplitnnError, match=re.escape(says)) as caught:
        read_machines(tmp_path / "m.toml")
    assert "\n" not in str(caught.value) and "m.toml" in str(caught.value)


def test_a_missing_machines_file_is_named(tmp_path):
    with pytest.raises(SplitnnError, match="machines file .*nope.toml' does not exist"):
        read_machines(tmp_path / "nope.toml")

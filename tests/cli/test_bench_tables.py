"""What run-bench's tables say about a run (issue 30, item 8): rendered from reports made up here."""
from __future__ import annotations

from types import SimpleNamespace

from splitnn.cli import bench_tables
from splitnn.onnxsplit.measure.adaptive import HeldBackCount
from splitnn.onnxsplit.measure.emulated_board import calibrate


def _versus(vs_all_device: float, vs_all_server: float | None):
    return SimpleNamespace(measure="end-to-end latency p50", split=0.1148, all_device=0.106, all_server=4.96,
                           vs_all_device=vs_all_device, vs_all_server=vs_all_server)


def test_the_split_against_the_baseline_it_is_is_no_gain_or_loss(capsys):
    """An all-on-device split was `0.92x (worse)` against all on the device: the same plan, run twice."""
    bench_tables._render_versus(_versus(0.92, 43.2), "device")
    out = capsys.readouterr().out
    assert "against all on the device: the same (the split is all on the device; 0.92x between the two runs)" in out
    assert "worse" not in out and "43.20x (better)" in out
    assert bench_tables._baseline_of(SimpleNamespace(cut=SimpleNamespace(id=19, tensors=()))) == "device"
    assert bench_tables._baseline_of(SimpleNamespace(cut=SimpleNamespace(id=0, tensors=("input",)))) == "server"
    assert bench_tables._baseline_of(SimpleNamespace(cut=SimpleNamespace(id=5, tensors=("a",)))) is None


def test_the_word_beside_a_ratio_follows_the_figure_shown(capsys):
    """0.998 is printed 1.00x: it was called worse."""
    bench_tables._render_versus(_versus(0.998, 1.004))
    out = capsys.readouterr().out
    assert "against all on the device: 1.00x (even)" in out and "against all on the server: 1.00x (even)" in out


def _slowdown_report(encode_board_s: float = 0.0, device_predicted_s: float = 0.0):
    part = calibrate(lambda: None, device_predicted_s)
    return SimpleNamespace(slowdown=SimpleNamespace(source="calibrated", emulated=True, device_part=part,
                                                    whole_model=None, encode_board_s=encode_board_s))


def test_the_codec_emulation_names_how_partition_scaled_the_encode(capsys):
    """The line said the encode was `scaled by the board's memory bandwidth` where the plan used the codec
    references' ratio."""
    bench_tables._render_emulation(_slowdown_report(encode_board_s=0.0012, device_predicted_s=0.01))
    out = capsys.readouterr().out
    assert "memory bandwidth against this host" not in out and "codec reference times" in out, out


def test_an_empty_device_part_is_not_called_slower(capsys):
    """All on the server: the device part is empty, predicted 0.00 ms; it was `this host is slower`."""
    bench_tables._render_emulation(_slowdown_report())
    out = capsys.readouterr().out
    assert "0.00 ms predicted" in out and "slower" not in out, out


def test_a_cut_held_back_by_the_deadline_is_said(capsys):
    """The adaptive report said nothing where the deadline left the server too little time at the chosen cut."""
    from rich.console import Console

    line = bench_tables._held_back_line(HeldBackCount(13, "deadline", 19, 0.004, 0.067), 0.12)
    Console(width=500).print(line)
    out = capsys.readouterr().out
    assert out.startswith("19 requests answered by the device alone where the estimate chose cut 13: the deadline "
                          "(120 ms) leaves the link and the server 4.0 ms there"), out
    assert "too little time for the server" in out
    assert "no time" in bench_tables._held_back_line(HeldBackCount(13, "deadline", 1, -0.01, 0.067), 0.12)

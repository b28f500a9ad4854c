"""The link's arithmetic is checked exactly; the relay is checked for delivering every byte in order.
Its timing fidelity is measured by benchmarks/bench_link.py, not here."""
from __future__ import annotations

import random
import socket
import threading

import pytest

from splitnn.cost_models.link_traces import read_trace
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.link_emulator import (
    LinkRelay,
    LinkSchedule,
    LinkSettings,
    settings_for,
)


def test_bandwidth_queues_packets_one_after_another():
    schedule = LinkSchedule(1e6, LinkSettings(delay_s=0.01))
    first = schedule.admit(0.0, 1250)  # 10 ms on the wire at 1 Mbit/s
    second = schedule.admit(0.0, 1250)  # waits for the first
    assert first == pytest.approx(0.020) and second == pytest.approx(0.030)
    assert schedule.admit(1.0, 125) == pytest.approx(1.0 + 0.001 + 0.01)  # an idle link starts at once


def test_outage_holds_packets_until_the_link_returns():
    schedule = LinkSchedule(None, LinkSettings(delay_s=0.005, outages=((1.0, 3.0),)))
    assert schedule.admit(0.5, 100) == pytest.approx(0.505)
    assert schedule.admit(1.5, 100) == pytest.approx(3.005)


def test_loss_stalls_and_keeps_order():
    settings = LinkSettings(delay_s=0.0, jitter_s=0.004, loss=0.3, rto_s=0.2)
    schedule = LinkSchedule(10e6, settings, random.Random(1))
    arrivals = [schedule.admit(i * 0.001, 1448) for i in range(400)]
    assert arrivals == sorted(arrivals)  # in order despite jitter
    assert 80 <= schedule.stalls <= 160  # about 30% of 400
    assert arrivals[-1] >= 0.399 + schedule.stalls * 0.2 * 0.9


def test_trace_steps_change_the_rate(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,mbps\n0,1\n2,10\n")
    steps = read_trace(trace)
    assert steps == ((0.0, 1e6), (2.0, 10e6))
    schedule = LinkSchedule(None, LinkSettings(trace=steps))
    assert schedule.admit(0.0, 1250) == pytest.approx(0.01)
    assert schedule.admit(2.5, 1250) == pytest.approx(2.501)
    for text, message in (("0,1\n0,2\n", "times must increase"), ("0,1\n1,x\n", "line 2"), ("", "no time_s,mbps")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(SplitnnError, match=message):
            read_trace(bad)
    with pytest.raises(SplitnnError, match="cannot read trace"):
        read_trace(tmp_path / "missing.csv")


def test_relay_delivers_every_byte_in_order():
    received = bytearray()
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.extend(data)
                conn.sendall(data[::-1][:1])

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    payload = bytes(random.Random(0).randbytes(300_000))
    settings = settings_for(200e6, 0.002, jitter_s=0.0005, loss=0.01)
    with LinkRelay(server.getsockname()[:2], settings) as relay:
        client = socket.create_connection(relay.address)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        while client.recv(65536):
            pass
        client.close()
    thread.join(timeout=30)
    server.close()
    assert bytes(received) == payload


def test_settings_refuse_a_certain_loss():
    with pytest.raises(SplitnnError, match="probability"):
        settings_for(1e6, 0.01, loss=1.0)


def test_a_link_that_follows_a_trace_is_described_by_the_trace():
    """issue 30, item 8: a run over a trace that went from 50 to 1 Mbit/s was described as `up 5.85 Mbit/s` (the
    preset's rate, which the trace overrides in both directions)."""
    from splitnn.onnxsplit.runtime.link_emulator import describe_trace

    described = settings_for(5.85e6, 0.05, trace=[(0.0, 50e6), (4.0, 1e6), (10.0, 1e6)]).describe()
    assert described == "the trace's rate both ways (50 Mbit/s, then 1 Mbit/s from 4 s), delay 25 ms each way"
    assert describe_trace([(0.5 * k, (1 + k % 7) * 1e6) for k in range(180)]) == "180 steps from 1 to 7 Mbit/s"
    assert settings_for(5.85e6, 0.05).describe() == "up 5.85 Mbit/s, down 5.85 Mbit/s, delay 25 ms each way"

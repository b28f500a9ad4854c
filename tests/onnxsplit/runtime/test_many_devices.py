"""One server, several devices (issue 15, item 4): batched answers, per-device counters, a drain that answers
what is in flight and takes nothing new."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from splitnn.onnxsplit.artifacts.plan_file import model_path
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart
from splitnn.onnxsplit.runtime.server import ModelServer, ServerLimits, server_part_path
from splitnn.onnxsplit.runtime.wire import REQUEST, Frame, encode_frame
from tests.helpers import session


def _feeds(part: DevicePart, seed: int) -> dict[str, np.ndarray]:
    return random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, seed)


def test_devices_are_batched_counted_by_name_and_answered_right(lenet_plan):
    part = DevicePart(lenet_plan)
    whole = session(model_path(part.folder, part.plan))
    logged: list[str] = []
    limits = ServerLimits(max_batch=3, max_wait_s=2.0)
    with ModelServer(server_part_path(lenet_plan), limits=limits, log=logged.append).start() as server:
        clients = [DeviceClient(part, server.address, timeout_s=30, name=f"board-{k}") for k in range(3)]
        for client in clients:  # connected and named before the batch
            assert client.request(_feeds(part, 99)).ok
        results = {}
        start = threading.Barrier(3)

        def request(k: int) -> None:
            start.wait()
            results[k] = clients[k].request(_feeds(part, k))

        threads = [threading.Thread(target=request, args=(k,)) for k in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for k in range(3):
            assert results[k].ok, results[k].error
            expected = whole.run(None, _feeds(part, k))[0]
            np.testing.assert_allclose(next(iter(results[k].outputs.values())), expected, rtol=1e-3, atol=1e-4)
        assert max(b.largest for b in server.batch_counts) == 3  # the three came in one session run
        for client in clients:
            client.close()
        deadline = time.monotonic() + 5
        while server.counts.open and time.monotonic() < deadline:
            time.sleep(0.02)
        devices = server.counts.devices
        assert sorted(devices) == ["board-0", "board-1", "board-2"]  # by name; the naming is no request
        assert all(d.ok == 2 and d.errors == 0 and d.connections == 1 and d.bytes_in > 0 for d in devices.values())
        assert server.counts.ok == 6
    assert sum("closed a connection of device board-" in line for line in logged) == 3


def test_drain_answers_the_request_in_flight_closes_idle_ones_and_takes_no_new(lenet_plan, monkeypatch):
    part = DevicePart(lenet_plan)
    release, started = threading.Event(), threading.Event()
    with ModelServer(server_part_path(lenet_plan), log=lambda line: None).start() as server:
        plain_run = server.run

        def slow_run(tensors):  # type: ignore[no-untyped-def]
            if tensors and not release.is_set():
                started.set()
                release.wait(30)  # held in flight until the drain has begun
            return plain_run(tensors)

        monkeypatch.setattr(server, "run", slow_run)
        idle = DeviceClient(part, server.address, timeout_s=30)
        release.set()
        assert idle.request(_feeds(part, 0)).ok  # a connection that then sits idle
        release.clear()
        busy = DeviceClient(part, server.address, timeout_s=30)
        answer = {}
        thread = threading.Thread(target=lambda: answer.update(r=busy.request(_feeds(part, 1))))
        thread.start()
        assert started.wait(30)
        drained: dict[str, bool] = {}
        drainer = threading.Thread(target=lambda: drained.update(ok=server.drain(timeout_s=30)))
        drainer.start()
        time.sleep(0.2)  # the drain waits on the request in flight
        assert drainer.is_alive()
        release.set()
        drainer.join(timeout=30)
        thread.join(timeout=30)
        assert drained["ok"] and answer["r"].ok  # the request in flight was answered
        with pytest.raises(SplitnnError, match="Connection refused"):  # its connection closed, no new one taken
            idle.request(_feeds(part, 2))
        assert server.counts.ok == 2


def test_a_client_that_trickles_its_frame_does_not_hold_the_server(lenet_plan):
    """Never silent for the idle timeout, but the frame as a whole must arrive within it."""
    logged: list[str] = []
    with ModelServer(server_part_path(lenet_plan), limits=ServerLimits(idle_timeout_s=1.0), log=logged.append).start() \
            as server, socket.create_connection(server.address, timeout=10) as sock:
        data = encode_frame(Frame(REQUEST, 1, tensors={"x": np.zeros(4, np.float32)}))
        for byte in data[:60]:  # one byte every 0.05 s: 3 s for 60 of its bytes
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed already
                break
            time.sleep(0.05)
        assert sock.recv(1) == b""  # the server closed it without an answer
    assert any("a frame took longer than 1 s to arrive" in line for line in logged), logged

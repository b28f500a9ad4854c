"""Device and server over a real socket: answers, bad frames, a missing server, nothing lost."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from splitnn.onnxsplit.artifacts.plan_file import model_path
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, parse_address
from splitnn.onnxsplit.runtime.server import ModelServer, server_part_path
from splitnn.onnxsplit.runtime.wire import (
    ERROR,
    HEADER,
    REQUEST,
    RESPONSE,
    STATUS_BAD_INPUT,
    STATUS_TOO_LARGE,
    Frame,
    read_frame,
    send_frame,
)
from tests.helpers import session


def _feeds(part: DevicePart, seed: int = 0) -> dict[str, np.ndarray]:
    return random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, seed)


def test_split_answers_match_the_whole_model(lenet_plan):
    part = DevicePart(lenet_plan)
    assert part.file is not None and part.file.suffix == ".ort"
    with ModelServer(server_part_path(lenet_plan)).start() as server:
        clients = [DeviceClient(part, server.address) for _ in range(2)]  # two devices at once
        whole = session(model_path(part.folder, part.plan))
        for seed in range(3):
            for client in clients:
                feeds = _feeds(part, seed)
                result = client.request(feeds)
                assert result.ok, result.error
                expected = whole.run(list(part.plan.outputs), feeds)[0]
                np.testing.assert_allclose(result.outputs[list(part.plan.outputs)[0]], expected, atol=1e-4)
                assert result.bytes_up > 16 * 5 * 5 * 4 and result.server_s > 0 and result.e2e_s >= result.server_s
        for client in clients:
            client.close()
        assert server.counts.ok == 6 and server.counts.errors == 0 and server.counts.connections == 2


def test_bad_frames_get_error_frames_and_the_server_goes_on(lenet_plan):
    part = DevicePart(lenet_plan)
    with ModelServer(server_part_path(lenet_plan), max_frame_bytes=200_000).start() as server:
        sock = socket.create_connection(server.address)
        with sock:
            send_frame(sock, Frame(REQUEST, 1, tensors={"wrong": np.ones(3, np.float32)}))
            reply = read_frame(sock)
            assert reply.kind == ERROR and reply.status == STATUS_BAD_INPUT and "lacks input" in reply.message
            send_frame(sock, Frame(REQUEST, 2, tensors={"x": np.ones(100_000, np.float32)}))  # 400 kB
            reply = read_frame(sock)
            assert reply.kind == ERROR and reply.status == STATUS_TOO_LARGE and reply.request_id == 2
            # A well-formed request on the same connection is still served.
            tensors, _ = DeviceClient(part, server.address).compute(_feeds(part))
            send_frame(sock, Frame(REQUEST, 3, tensors=tensors))
            assert read_frame(sock).kind == RESPONSE
        # Garbage header: an error frame, then the server closes that connection and keeps the others.
        bad = socket.create_connection(server.address)
        with bad:
            bad.sendall(b"GARBAGE!" + bytes(HEADER.size - 8))  # exactly one header: nothing left unread
            assert "magic" in read_frame(bad).message
            assert bad.recv(1) == b""
        client = DeviceClient(part, server.address)
        assert client.request(_feeds(part)).ok
        client.close()
        assert server.counts.ok == 2 and server.counts.errors == 3


def test_server_not_running_is_a_clear_error(lenet_plan):
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    client = DeviceClient(DevicePart(lenet_plan), ("127.0.0.1", port), timeout_s=2)
    with pytest.raises(SplitnnError, match="cannot reach the server .* start it with `splitnn serve"):
        client.request(_feeds(client.part))


def test_addresses_and_missing_plans(tmp_path):
    assert parse_address("10.0.0.2:9000") == ("10.0.0.2", 9000)
    for text in ("10.0.0.2", ":9000", "host:port"):
        with pytest.raises(SplitnnError, match="HOST:PORT"):
            parse_address(text)
    with pytest.raises(SplitnnError, match="no plan.json"):
        DevicePart(tmp_path)


def test_outage_mid_request_completes_when_the_link_returns(lenet_plan):
    from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for

    part = DevicePart(lenet_plan)
    feeds = _feeds(part)
    with ModelServer(server_part_path(lenet_plan)).start() as server, \
            LinkRelay(server.address, settings_for(None, 0.0, outages=[(0.0, 0.8)])) as relay:
        result = DeviceClient(part, relay.address, timeout_s=10).request(feeds)
        answered_at = time.perf_counter() - relay.epoch
    assert result.ok, result.error
    assert answered_at >= 0.8  # held while the link was down, delivered when it came back


def test_outage_longer_than_the_timeout_is_an_explicit_error(lenet_plan):
    from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for

    part = DevicePart(lenet_plan)
    with ModelServer(server_part_path(lenet_plan)).start() as server, \
            LinkRelay(server.address, settings_for(None, 0.0, outages=[(0.0, 30.0)])) as relay:
        client = DeviceClient(part, relay.address, timeout_s=0.3)
        results = [client.request(_feeds(part)) for _ in range(2)]
    assert [r.ok for r in results] == [False, False]
    assert all(r.error == "timed out after 0.3 s waiting for the server" for r in results)


def test_one_address_holds_at_most_its_share_and_a_silent_client_blocks_no_one(lenet_plan):
    """issue 30, item 7: connections that send nothing (a flood's, or a slow client's) wait in their own threads, never
    in the accepting one, and one address holds at most ServerLimits.max_per_address of them: one more is turned away
    with an error frame that says why, while a device from another address is served, and the address gets its
    places back as its connections close. The listen queue is a real one, not socketserver's 5."""
    from splitnn.onnxsplit.runtime.server import LISTEN_BACKLOG, ServerLimits
    from splitnn.onnxsplit.runtime.wire import CHALLENGE, STATUS_BUSY

    token = b"a token"
    part = DevicePart(lenet_plan)
    logged: list[str] = []
    limits = ServerLimits(max_connections=10, max_per_address=2)
    with ModelServer(server_part_path(lenet_plan), token=token, limits=limits, log=logged.append).start() as server:
        assert server._server.request_queue_size == LISTEN_BACKLOG >= 1024

        def silent() -> socket.socket:  # from another loopback address than the device's 127.0.0.1
            return socket.create_connection(server.address, timeout=5, source_address=("127.0.0.2", 0))

        held = [silent() for _ in range(2)]
        assert all(read_frame(s).kind == CHALLENGE for s in held)  # admitted, and waiting for an answer
        with silent() as third:
            turned_away = read_frame(third)
            assert turned_away.kind == ERROR and turned_away.status == STATUS_BUSY
            assert "already holds 2 connections from 127.0.0.2" in turned_away.message
            assert third.recv(1) == b""  # then closed
        device = DeviceClient(part, server.address, token=token, timeout_s=5)
        assert all(device.request(_feeds(part, seed)).ok for seed in range(2))  # while the two wait, silent
        device.close()
        assert server.counts.refused_address == 1 and server.counts.refused_busy == 0 and server.counts.ok == 2
        for sock in held:  # their challenges go unanswered: refused, and their places freed
            sock.close()
        deadline = time.monotonic() + 10
        while server.counts.open and time.monotonic() < deadline:
            time.sleep(0.01)
        with silent() as again:
            assert read_frame(again).kind == CHALLENGE
    assert any("--max-per-address 2 reached for 127.0.0.2" in line for line in logged)

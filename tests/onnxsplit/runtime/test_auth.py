"""A server with a token (issue 15, item 1): a challenge per connection, answered with an HMAC; the token never
crosses the network, a wrong or replayed answer is refused with one error frame and a log line."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.auth import ANSWER, NONCE, answer, is_loopback, read_token
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, Refused
from splitnn.onnxsplit.runtime.auth import OTHER_FRAME, WRONG_ANSWER
from splitnn.onnxsplit.runtime.server import ModelServer, ServerLimits, server_part_path
from splitnn.onnxsplit.runtime.wire import AUTH, CHALLENGE, ERROR, STATUS_UNAUTHORIZED, Frame, read_frame, send_frame

TOKEN = b"0123456789abcdef0123456789abcdef"


def _feeds(part: DevicePart) -> dict[str, np.ndarray]:
    return random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, 0)


def test_only_a_device_holding_the_token_is_served(lenet_plan):
    part = DevicePart(lenet_plan)
    logged: list[str] = []
    with ModelServer(server_part_path(lenet_plan), token=TOKEN, log=logged.append).start() as server:
        right = DeviceClient(part, server.address, token=TOKEN, timeout_s=5)
        assert all(right.request(_feeds(part)).ok for _ in range(2))  # one handshake, then requests on it
        with pytest.raises(Refused, match="asks for a token"):
            DeviceClient(part, server.address, timeout_s=5).request(_feeds(part))
        with pytest.raises(Refused, match="refused this device's token"):
            DeviceClient(part, server.address, token=b"another token", timeout_s=5).request(_feeds(part))
        assert server.counts.ok == 2
        _wait_for(lambda: len(logged) >= 2)  # each refusal is logged by its connection's thread, in any order
    assert len(logged) == 2 and all(line.startswith("refused 127.0.0.1:") for line in logged)
    assert {line.split(": ", 1)[1] for line in logged} == {OTHER_FRAME, WRONG_ANSWER}


def _wait_for(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Until `condition()` holds (what another thread does), for at most `seconds`: a bound, not a timing."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_refused_device_is_told_so_even_when_its_request_is_large(lenet_plan):
    """issue 30, item 2: a device with a wrong token that sends its request right after its answer read `Connection
    reset by peer` (the server closed with the request unread); it reads the server's refusal now, with or
    without a name to announce, and a refusal is never a failed request an adaptive device would retry."""
    part = DevicePart(lenet_plan)
    large = {"x": np.zeros(4_000_000, np.float32)}  # 16 MB: still arriving when the server refuses
    with ModelServer(server_part_path(lenet_plan), token=TOKEN, log=lambda line: None).start() as server:
        for name in (None, "board-7", None):
            client = DeviceClient(part, server.address, token=b"another token", timeout_s=10, name=name)
            with pytest.raises(Refused, match="refused this device's token: give --token-file the same file"):
                client.try_exchange(large)
        with socket.create_connection(server.address, timeout=5) as raw:  # what the server's frame says
            nonce = read_frame(raw).tensors[NONCE].tobytes()
            send_frame(raw, Frame(AUTH, 0, tensors={ANSWER: np.frombuffer(answer(b"another", nonce), np.uint8)}))
            refused = read_frame(raw)
            assert refused.kind == ERROR and refused.status == STATUS_UNAUTHORIZED
            assert "does not hold this server's token" in refused.message and "--token-file" in refused.message
        assert server.counts.ok == 0


def test_the_device_command_exits_2_with_one_line_when_refused(lenet_plan, tmp_path, capsys):
    """`splitnn device` with a wrong token: one line, exit 2 (it printed `connection failed: [Errno 104]`)."""
    from splitnn.cli.main import main

    (tmp_path / "wrong.txt").write_text("another token\n")
    with ModelServer(server_part_path(lenet_plan), token=TOKEN, log=lambda line: None).start() as server:
        with pytest.raises(SystemExit) as exit_:
            main(["device", str(lenet_plan), "--server", f"127.0.0.1:{server.address[1]}", "--random", "2",
                  "--token-file", str(tmp_path / "wrong.txt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert "refused this device's token" in err[0] and "Traceback" not in err[0]


def test_the_token_never_crosses_and_an_answer_cannot_be_replayed(lenet_plan):
    with ModelServer(server_part_path(lenet_plan), token=TOKEN, log=lambda line: None).start() as server:
        with socket.create_connection(server.address, timeout=5) as first:
            challenge = read_frame(first)
            nonce = challenge.tensors[NONCE].tobytes()
            assert challenge.kind == CHALLENGE and len(nonce) == 32
            proof = np.frombuffer(answer(TOKEN, nonce), np.uint8)
            send_frame(first, Frame(AUTH, 0, tensors={ANSWER: proof}))
            assert TOKEN not in proof.tobytes()  # only the HMAC went out
        with socket.create_connection(server.address, timeout=5) as second:  # an eavesdropper replays it
            assert read_frame(second).tensors[NONCE].tobytes() != nonce  # a fresh nonce per connection
            send_frame(second, Frame(AUTH, 0, tensors={ANSWER: proof}))
            refused = read_frame(second)
            assert refused.kind == ERROR and refused.status == STATUS_UNAUTHORIZED
        assert server.counts.ok == 0


def test_a_device_with_a_token_and_a_server_without_one(lenet_plan):
    part = DevicePart(lenet_plan)
    with ModelServer(server_part_path(lenet_plan)).start() as server:
        result = DeviceClient(part, server.address, token=TOKEN, timeout_s=0.5).try_exchange({"x": np.zeros(1)})
        assert not result.ok and "without --token-file" in result.error


def test_token_files_and_loopback_addresses(tmp_path):
    (tmp_path / "t").write_text("  secret-token \n")
    assert read_token(tmp_path / "t") == b"secret-token"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SplitnnError, match="is empty"):
        read_token(tmp_path / "empty")
    with pytest.raises(SplitnnError, match="cannot be read"):
        read_token(tmp_path / "missing")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("board.local")


def test_connections_over_the_limit_are_turned_away_and_idle_ones_closed(lenet_plan):
    """issue 15, item 4 (in part): --max-connections and --idle-timeout; a device whose kept connection the server
    closed for idling opens it again on its next request, which succeeds."""
    import time

    part = DevicePart(lenet_plan)
    logged: list[str] = []
    with ModelServer(server_part_path(lenet_plan), limits=ServerLimits(max_connections=1, idle_timeout_s=0.3), log=logged.append).start() as server:
        first = DeviceClient(part, server.address, timeout_s=5)
        assert first.request(_feeds(part)).ok  # holds the one connection
        busy = DeviceClient(part, server.address, timeout_s=5).request(_feeds(part))
        assert not busy.ok and "try again later" in busy.error
        deadline = time.monotonic() + 5
        while server.counts.open and time.monotonic() < deadline:  # the first device falls silent: closed
            time.sleep(0.05)
        assert server.counts.open == 0 and server.counts.refused_busy == 1
        assert first.request(_feeds(part)).ok  # reconnects once, transparently
    assert any("--max-connections 1 reached" in line for line in logged)
    assert any("nothing for 0.3 s" in line for line in logged)

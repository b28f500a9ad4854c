"""The frame decoder and a live server, fuzzed with Hypothesis (issue 15, item 5): random bytes, and real frames
mutated (bits flipped, cut short, length fields set to their limits). The decoder refuses every one of them with a
ProtocolError or a closed connection, never another exception; the server answers each with an error frame or a
close, never dies, and serves a real device afterwards.

The examples are derandomized (the same ones every run, so CI cannot pass by luck on one run and fail on the
next) and counted: FRAMES_DECODED and FRAMES_SERVED say how many ran.
"""
from __future__ import annotations

import socket
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart
from splitnn.onnxsplit.runtime.server import ModelServer, server_part_path
from splitnn.onnxsplit.runtime.wire import (
    ERROR,
    HEADER,
    REQUEST,
    RESPONSE,
    ConnectionClosed,
    Frame,
    ProtocolError,
    encode_frame,
    read_frame,
)

FRAMES_DECODED = 3_000
FRAMES_SERVED = 300
MAX_FRAME = 64 * 1024  # the limit both sides read under here

tensor = st.builds(
    lambda shape, dtype, seed: np.random.default_rng(seed).integers(0, 100, size=shape).astype(dtype),
    st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    st.sampled_from([np.float32, np.float16, np.int64, np.uint8, np.bool_]),
    st.integers(0, 2**16),
)
real_frame = st.builds(
    lambda kind, request_id, tensors, codec: encode_frame(Frame(kind, request_id, tensors=tensors), codec),
    st.sampled_from([REQUEST, RESPONSE]), st.integers(0, 2**64 - 1),
    st.dictionaries(st.text(min_size=1, max_size=8), tensor, max_size=3),
    st.sampled_from([None]),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real frame, then one of: bits flipped, cut short, a length field set to a limit, bytes appended."""
    data = bytearray(draw(real_frame))
    how = draw(st.sampled_from(["flip", "cut", "length", "append"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
    elif how == "cut":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "length":  # the header's payload length, or a tensor's length field, at a limit
        value = draw(st.sampled_from([0, 1, MAX_FRAME, MAX_FRAME + 1, 2**31, 2**32 - 1]))
        at = draw(st.sampled_from([HEADER.size - 4, *range(HEADER.size + 2, max(HEADER.size + 3, len(data) - 4))]))
        if at + 4 <= len(data):
            struct.pack_into("<I", data, at, value)
    else:
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


frames = st.one_of(st.binary(max_size=256), mutated())


def _decode(data: bytes) -> Frame | None:
    """read_frame on `data` then a closed stream: the frame, or None when it was refused."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        try:
            return read_frame(right, MAX_FRAME)
        except (ProtocolError, ConnectionClosed):
            return None


def test_the_decoder_refuses_every_malformed_frame_and_nothing_else_escapes():
    decoded: list[int] = []

    @settings(max_examples=FRAMES_DECODED, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(frames)
    def decode(data: bytes) -> None:
        frame = _decode(data)  # anything but ProtocolError or ConnectionClosed fails the test
        assert frame is None or frame.wire_bytes == HEADER.size + struct.unpack_from("<I", data, HEADER.size - 4)[0]
        decoded.append(len(data))

    decode()
    assert len(decoded) >= FRAMES_DECODED


@pytest.fixture(scope="module")
def fuzzed_server(lenet_plan):
    with ModelServer(server_part_path(lenet_plan), max_frame_bytes=MAX_FRAME).start() as server:
        yield server


def _exchange(address: tuple[str, int], data: bytes) -> list[Frame]:
    """Send `data` on a fresh connection, close the writing side, and read until the server closes."""
    replies = []
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused the frame and closed before all of it was sent
            pass
        while True:
            try:
                replies.append(read_frame(sock))
            except (ConnectionClosed, ConnectionResetError):
                return replies


def test_the_server_survives_fuzzed_frames_and_serves_a_device_after(fuzzed_server, lenet_plan):
    served: list[int] = []

    @settings(max_examples=FRAMES_SERVED, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(frames)
    def serve(data: bytes) -> None:
        replies = _exchange(fuzzed_server.address, data)  # returns only once the server closed: it never hangs
        # A mutated frame may still be a well-formed request (a flipped bit in a tensor's values): answered.
        # Anything else gets an error frame, or a close when the frame boundaries are lost.
        assert all(r.kind in (ERROR, RESPONSE) for r in replies)
        served.append(len(data))

    serve()
    assert len(served) >= FRAMES_SERVED
    part = DevicePart(lenet_plan)
    feeds = random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, 0)
    assert DeviceClient(part, fuzzed_server.address, timeout_s=5).request(feeds).ok  # still serving

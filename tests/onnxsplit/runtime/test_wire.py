from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from splitnn.onnxsplit.runtime.wire import (
    ERROR,
    HEADER,
    MAGIC,
    REQUEST,
    STATUS_BAD_FRAME,
    STATUS_TOO_LARGE,
    Frame,
    ProtocolError,
    decode_tensors,
    encode_frame,
    encode_tensors,
    read_frame,
    send_frame,
)


def test_tensors_round_trip_in_their_dtypes():
    tensors = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "ids": np.array([[1, 2]], dtype=np.int64),
               "mask": np.array([True, False]), "scalar": np.array(2.5, dtype=np.float16), "é": np.zeros((0, 3))}
    back = decode_tensors(encode_tensors(tensors))
    assert list(back) == list(tensors)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)


@pytest.mark.parametrize("payload", [b"", b"\x01\x00", b"\x01\x00\x01\x00x\xff\xff\xff\x00", encode_tensors({"a": np.ones(2)}) + b"z"])
def test_malformed_payloads_are_refused(payload):
    with pytest.raises(ProtocolError):
        decode_tensors(payload)


def test_pickled_object_arrays_are_refused():
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    data = buffer.getvalue()
    payload = struct.pack("<H", 1) + struct.pack("<H", 1) + b"a" + struct.pack("<I", len(data)) + data
    with pytest.raises(ProtocolError):
        decode_tensors(payload)


def test_frames_over_a_socket_pair():
    left, right = socket.socketpair()
    with left, right:
        sent = send_frame(left, Frame(REQUEST, 7, tensors={"x": np.ones((2, 2), np.float32)}))
        frame = read_frame(right)
        assert frame.kind == REQUEST and frame.request_id == 7 and frame.wire_bytes == sent
        send_frame(left, Frame(ERROR, 8, STATUS_BAD_FRAME, message="nope"))
        frame = read_frame(right)
        assert frame.kind == ERROR and frame.message == "nope" and frame.status == STATUS_BAD_FRAME

        # Too large: refused, drained, and the next frame still reads.
        left.sendall(encode_frame(Frame(REQUEST, 9, tensors={"x": np.ones(1000)})))
        send_frame(left, Frame(REQUEST, 10, tensors={"y": np.zeros(1)}))
        with pytest.raises(ProtocolError) as info:
            read_frame(right, max_payload_bytes=1000)
        assert info.value.status == STATUS_TOO_LARGE and info.value.resumable and info.value.request_id == 9
        assert read_frame(right, max_payload_bytes=1000).request_id == 10

        left.sendall(b"JUNK" + bytes(HEADER.size - 4))
        with pytest.raises(ProtocolError, match="magic") as info:
            read_frame(right)
        assert not info.value.resumable
    assert MAGIC == b"SPNN"


def test_a_lying_header_is_refused_before_anything_is_allocated():
    """issue 18: an .npy header claiming 10^9 x 10^9 elements, and a frame length of 4 GB."""
    import io
    import struct

    from splitnn.onnxsplit.runtime.wire import HEADER, MAGIC, VERSION, decode_tensors

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 2), np.float32))
    npy = buffer.getvalue().replace(b"(2, 2)", b"(1000000000, 1000000000)")
    payload = (struct.pack("<H", 1) + struct.pack("<H", 1) + b"x" + struct.pack("<B", 4) + b"none"
               + struct.pack("<I", len(npy)) + npy)
    with pytest.raises(ProtocolError, match="tensor 'x': shape \\[1000000000, 1000000000\\]"):
        decode_tensors(payload)
    left, right = socket.socketpair()
    with left, right:
        left.sendall(HEADER.pack(MAGIC, VERSION, REQUEST, 0, 5, 0.0, 0.0, 0xFFFFFFFF))  # and nothing behind it
        right.settimeout(5)
        with pytest.raises(ProtocolError, match="over the maximum") as info:
            read_frame(right)  # refused at once, not read for 4 GB
        assert info.value.status == STATUS_TOO_LARGE and not info.value.resumable


def test_tensors_travel_in_the_codec_they_name_and_an_unknown_one_is_refused():
    """issue 14: each tensor names its codec; the receiver decodes by it."""
    import struct

    from splitnn.onnxsplit.codecs.specs import parse_codec

    x = np.maximum(np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32), 0)
    ids = np.array([[3, 1]], dtype=np.int64)
    plain = encode_tensors({"x": x, "ids": ids})
    coded = encode_tensors({"x": x, "ids": ids}, parse_codec("int8+lossless"))
    assert len(coded) < len(plain) / 4
    back = decode_tensors(coded)
    assert np.array_equal(back["ids"], ids) and np.abs(back["x"] - x).max() <= x.max() / 255 / 2 + 1e-6
    bad = coded.replace(b"int8+lossless", b"int9+lossless")
    with pytest.raises(ProtocolError, match="unknown codec 'int9\\+lossless'"):
        decode_tensors(bad)
    # A compressed tensor whose header claims more than the limit is refused before it is expanded.
    import blosc2

    from splitnn.onnxsplit.codecs import lossless

    bomb = lossless.pack(blosc2.compress2(bytes(1 << 20), typesize=1))
    payload = struct.pack("<HH", 1, 1) + b"b" + struct.pack("<B", 8) + b"lossless" + struct.pack("<I", len(bomb)) + bomb
    limit = lossless.MAX_DECODED_BYTES
    try:
        lossless.MAX_DECODED_BYTES = 1 << 10
        with pytest.raises(ProtocolError, match="would expand to 1048576 bytes"):
            decode_tensors(payload)
    finally:
        lossless.MAX_DECODED_BYTES = limit

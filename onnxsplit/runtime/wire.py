"""The device-server wire protocol: length-prefixed frames over TCP.

A frame is a fixed header followed by a payload:

    magic   4 bytes  b"SPNN"
    version u8       3
    kind    u8       1 request, 2 response, 3 error
    status  u16      0 ok; for errors, one of the STATUS_* codes
    request u64      request id, echoed in the reply
    server  f64      server compute seconds (responses), else 0
    decode  f64      seconds the server took to decode the request's tensors (responses), else 0
    length  u32      payload bytes that follow (at most the receiver's maximum)

A request or response payload is a list of named tensors:

    count u16, then per tensor: name length u16, name (UTF-8), codec length u8,
    codec (ASCII, a spec of onnxsplit/codecs, "none" for plain), data length u32,
    the data: with "none" the array in numpy's .npy format (self-describing, read
    without pickle), else the codec's bytes (which hold .npy pieces)

An error payload is a UTF-8 message. Everything is little-endian. No library
frames messages on a raw socket this simply without bringing a server
framework (gRPC, ZeroMQ) the device would also need; .npy does the tensors.
"""
from __future__ import annotations

import io
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from splitnn.onnxsplit.codecs.base import Codec
from splitnn.onnxsplit.codecs.specs import Codecs, codec_of, needs_ranges, parse_codec
from splitnn.onnxsplit.core.errors import SplitnnError

MAGIC = b"SPNN"
VERSION = 3  # 2: each tensor names its codec; 3: a response says how long the request took to decode
REQUEST, RESPONSE, ERROR = 1, 2, 3
CHALLENGE, AUTH = 4, 5  # a server with a token: its nonce, and the device's HMAC of it (runtime/auth.py)
STATUS_OK = 0
STATUS_BAD_FRAME = 1  # malformed header or payload
STATUS_TOO_LARGE = 2  # payload over the receiver's maximum
STATUS_BAD_INPUT = 3  # tensors do not match the part's inputs
STATUS_FAILED = 4  # the part failed to run
STATUS_UNAUTHORIZED = 5  # no answer, or a wrong one, to the server's challenge
STATUS_BUSY = 6  # the server is at its maximum of connections

HEADER = struct.Struct("<4sBBHQddI")
DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024
# A frame over the maximum by at most this much is read and dropped, so the connection goes on; a larger one is
# refused without reading it (an error frame, then the connection closes).
DRAIN_MAX_BYTES = 64 * 1024 * 1024

# Requests that carry one of these tensors alone are the protocol's own, answered at once and empty:
# a bandwidth probe (runtime/bandwidth.py), and a device naming itself on its connection (the UTF-8 bytes of a
# name of at most DEVICE_NAME_MAX_BYTES) so that the server counts its requests under that name.
PROBE_TENSOR = "__splitnn_probe__"
DEVICE_NAME_TENSOR = "__splitnn_device__"
DEVICE_NAME_MAX_BYTES = 64


class ProtocolError(Exception):
    """A frame that breaks the protocol; `status` says how.

    `resumable`: the whole frame was consumed, so the next one can be read;
    otherwise the frame boundaries are lost and the connection must close.
    """

    def __init__(self, message: str, status: int = STATUS_BAD_FRAME, request_id: int = 0, resumable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.resumable = resumable


class FrameTooSlow(TimeoutError):
    """A frame that began but did not arrive whole within its time limit (read_frame's frame_timeout_s)."""

    def __init__(self) -> None:
        super().__init__("a frame took longer than its time limit to arrive")


class ConnectionClosed(Exception):
    """The peer closed the connection (between frames, or inside one when `partial`)."""

    def __init__(self, partial: bool) -> None:
        super().__init__("connection closed inside a frame" if partial else "connection closed")
        self.partial = partial


@dataclass
class Frame:
    kind: int
    request_id: int
    status: int = STATUS_OK
    server_s: float = 0.0
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    message: str = ""
    wire_bytes: int = 0  # header + payload, as read
    decode_s: float = 0.0  # a response: the server's decode of the request's tensors (on the wire)
    read_decode_s: float = 0.0  # this side's decode of this frame's tensors, timed by read_frame (not on the wire)


def encode_tensors(tensors: dict[str, np.ndarray], codec: Codecs | None = None) -> bytes:
    """The payload of `tensors`, each encoded with `codec` or its own in a mapping (plain .npy by default)."""
    out = io.BytesIO()
    out.write(struct.pack("<H", len(tensors)))
    for name, array in tensors.items():
        own = codec_of(codec, name)
        codec_name = own.name.encode("ascii")
        encoded_name = name.encode("utf-8")
        array = np.asarray(array)  # ascontiguousarray would turn a 0-d tensor into 1-d
        data = own.encode(array if array.flags.c_contiguous else array.copy(order="C"))
        out.write(struct.pack("<H", len(encoded_name)))
        out.write(encoded_name)
        out.write(struct.pack("<B", len(codec_name)))
        out.write(codec_name)
        out.write(struct.pack("<I", len(data)))
        out.write(data)
    return out.getvalue()


def decode_tensors(payload: bytes, codecs: Mapping[str, Codec] | None = None) -> dict[str, np.ndarray]:
    """The tensors of a payload; a tensor in a calibrated codec is decoded with `codecs[name]`, whose ranges the
    receiver holds (from its plan)."""
    view = memoryview(payload)
    try:
        (count,) = struct.unpack_from("<H", view, 0)
        pos = 2
        tensors: dict[str, np.ndarray] = {}
        for _ in range(count):
            (name_len,) = struct.unpack_from("<H", view, pos)
            name = bytes(view[pos + 2 : pos + 2 + name_len]).decode("utf-8")
            pos += 2 + name_len
            (codec_len,) = struct.unpack_from("<B", view, pos)
            codec_name = bytes(view[pos + 1 : pos + 1 + codec_len]).decode("ascii")
            pos += 1 + codec_len
            (data_len,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if pos + data_len > len(view):
                raise ProtocolError(f"tensor '{name}' runs past the end of the payload")
            tensors[name] = _decoded(name, codec_name, view[pos : pos + data_len], codecs or {})
            pos += data_len
        if pos != len(view):
            raise ProtocolError(f"{len(view) - pos} stray bytes after the tensors")
        return tensors
    except (struct.error, ValueError, UnicodeDecodeError, MemoryError) as exc:
        raise ProtocolError(f"malformed tensor payload: {exc}") from None


def _decoded(name: str, codec_name: str, data: memoryview, codecs: Mapping[str, Codec]) -> np.ndarray:
    """A tensor's bytes as an array, by the codec it names; every .npy header is checked against the bytes that
    came before anything is allocated (codecs/base.npy_array), and a compressed one against a limit."""
    held = codecs.get(name)
    if held is not None and held.name == codec_name:
        codec = held
    elif needs_ranges(codec_name):
        raise ProtocolError(f"tensor '{name}' came as {codec_name}, and this side holds no calibration for it "
                            "(serve the plan the device was given)")
    else:
        try:
            codec = parse_codec(codec_name)
        except SplitnnError:
            raise ProtocolError(f"tensor '{name}' uses an unknown codec '{codec_name}'") from None
    try:
        return codec.decode(data)
    except ValueError as exc:
        raise ProtocolError(f"tensor '{name}': {exc}") from None


def encode_frame(frame: Frame, codec: Codecs | None = None) -> bytes:
    payload = frame.message.encode("utf-8") if frame.kind == ERROR else encode_tensors(frame.tensors, codec)
    header = HEADER.pack(MAGIC, VERSION, frame.kind, frame.status, frame.request_id, frame.server_s, frame.decode_s,
                         len(payload))
    return header + payload


def _recv_exact(sock: socket.socket, count: int, started: bool, deadline: float | None = None) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameTooSlow()
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(count - len(chunks), 1 << 20))
        except socket.timeout:
            if deadline is not None:
                raise FrameTooSlow() from None
            raise
        if not chunk:
            raise ConnectionClosed(partial=started or bool(chunks))
        chunks += chunk
    return bytes(chunks)


def read_frame(sock: socket.socket, max_payload_bytes: int = DEFAULT_MAX_FRAME_BYTES,
               codecs: Mapping[str, Codec] | None = None, frame_timeout_s: float | None = None) -> Frame:
    """Read one frame. A payload over `max_payload_bytes` is drained and refused (STATUS_TOO_LARGE); `codecs`:
    the calibrated codecs this side holds, by tensor name. With `frame_timeout_s`, the whole frame must arrive
    within that time of its first byte (else FrameTooSlow), so a peer that trickles bytes cannot hold the
    reader; the wait for the first byte is the socket's own timeout."""
    if frame_timeout_s is None:
        return _read_frame(sock, max_payload_bytes, codecs, None)
    waiting = sock.gettimeout()
    first = _recv_exact(sock, 1, started=False)
    try:
        return _read_frame(sock, max_payload_bytes, codecs, time.monotonic() + frame_timeout_s, first)
    finally:
        sock.settimeout(waiting)


def _read_frame(sock: socket.socket, max_payload_bytes: int, codecs: Mapping[str, Codec] | None,
                deadline: float | None, first: bytes = b"") -> Frame:
    header = first + _recv_exact(sock, HEADER.size - len(first), started=bool(first), deadline=deadline)
    magic, version, kind, status, request_id, server_s, decode_s, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(f"not a splitnn frame (magic {magic!r})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this side speaks {VERSION}")
    if kind not in (REQUEST, RESPONSE, ERROR, CHALLENGE, AUTH):
        raise ProtocolError(f"unknown frame kind {kind}")
    if length > max_payload_bytes + DRAIN_MAX_BYTES:  # refused unread: its length alone says it is not a request
        raise ProtocolError(f"frame of {length} bytes is over the maximum of {max_payload_bytes}", STATUS_TOO_LARGE,
                            request_id, resumable=False)
    if length > max_payload_bytes:
        remaining = length
        while remaining:  # drain it, so the connection stays usable
            remaining -= len(_recv_exact(sock, min(remaining, 1 << 20), started=True, deadline=deadline))
        raise ProtocolError(f"frame of {length} bytes is over the maximum of {max_payload_bytes}", STATUS_TOO_LARGE,
                            request_id, resumable=True)
    payload = _recv_exact(sock, length, started=True, deadline=deadline) if length else b""
    frame = Frame(kind, request_id, status, server_s, wire_bytes=HEADER.size + length, decode_s=decode_s)
    if kind == ERROR:
        frame.message = payload.decode("utf-8", errors="replace")
    else:
        start = time.perf_counter()
        try:
            frame.tensors = decode_tensors(payload, codecs)
        except ProtocolError as exc:
            raise ProtocolError(str(exc), exc.status, request_id, resumable=True) from None
        frame.read_decode_s = time.perf_counter() - start
    return frame


def send_frame(sock: socket.socket, frame: Frame) -> int:
    """Send one frame; returns the bytes sent."""
    data = encode_frame(frame)
    sock.sendall(data)
    return len(data)

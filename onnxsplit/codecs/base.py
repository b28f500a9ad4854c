"""What every codec is, the raw .npy codec, and the small container codecs pack their pieces into."""
from __future__ import annotations

import io
import math
import struct
from typing import Protocol

import numpy as np


class Codec(Protocol):
    """Turns an array into bytes and back; lossy codecs give back an approximation of the original dtype."""

    name: str  # the spec that parse_codec reads back

    def encode(self, array: np.ndarray) -> bytes: ...

    def decode(self, data: bytes | memoryview) -> np.ndarray: ...


class Raw:
    """No compression: the array in numpy's .npy format (what the wire always sent)."""

    name = "none"

    def encode(self, array: np.ndarray) -> bytes:
        return npy_bytes(array)

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        return npy_array(data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)  # (np.ascontiguousarray would make a 0-d tensor 1-d)
    return buffer.getvalue()


def npy_array(data: bytes | memoryview) -> np.ndarray:
    """The array in .npy bytes, its header checked against the bytes that came before anything is allocated: a
    header that claims more elements than the bytes hold, or an object dtype, is a ValueError."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)  # numpy's own parser, with its limit on the header's size
    except ValueError:
        raise
    except Exception as exc:  # a peer's bytes: numpy's parser also raises TokenError, SyntaxError... (found by fuzzing)
        raise ValueError(f"unreadable .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise ValueError("an object dtype (pickled data is never read)")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data) - stream.tell():
        raise ValueError(f"shape {list(shape)} of {dtype} is {expected} bytes but {len(data) - stream.tell()} came")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


# Pieces of an encoding, each prefixed by its length: numpy has no format for "an array plus its scales", and a
# length prefix is all it takes (the wire frames its own payload the same way).
_LENGTH = struct.Struct("<I")


def pack(*pieces: bytes) -> bytes:
    return b"".join(_LENGTH.pack(len(p)) + p for p in pieces)


def unpack(data: bytes | memoryview) -> list[bytes]:
    pieces, offset = [], 0
    view = memoryview(data)
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise ValueError("truncated codec payload")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise ValueError("truncated codec payload")
        pieces.append(bytes(view[offset:offset + length]))
        offset += length
    return pieces

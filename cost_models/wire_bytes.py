"""What tensors cost on the wire: the bytes a frame of the device-server protocol takes beyond the data.

A frame (runtime/wire.py) is a 36-byte header, a tensor count, and per tensor
its name, its codec's name ("none" here: plain tensors), a length and the
array in numpy's .npy format, whose own header
(about 128 bytes) says its dtype and shape. On a fast link that is noise; over
Cat-1 (0.13 Mbit/s) the few hundred bytes around two 4-float tensors took 25 ms
a frame, five times the device's compute, and a stream the planner priced at
269 frames/s ran at 45. The planner prices these bytes too; a test checks this
count against the encoder itself.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np

FRAME_HEADER_BYTES = 36  # magic, version, kind, status, request id, server and decode seconds, payload length
TENSOR_COUNT_BYTES = 2


def npy_header_bytes(shape: Sequence[int], dtype: str) -> int:
    """The length of the .npy preamble (magic, version, header) numpy writes for an array of `shape` and `dtype`."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.tell()


PLAIN_CODEC = "none"


def tensor_field_bytes(name: str, codec: str) -> int:
    """A tensor's fields in a frame before its data: name length and name, codec length and codec, data length."""
    return 2 + len(name.encode("utf-8")) + 1 + len(codec) + 4


def tensor_overhead_bytes(name: str, shape: Sequence[int], dtype: str) -> int:
    """What one plain tensor adds to a frame beyond its data: its fields and its .npy header."""
    return tensor_field_bytes(name, PLAIN_CODEC) + npy_header_bytes(shape, dtype)


def frame_overhead_bytes(tensors: Iterable[tuple[str, Sequence[int], str]]) -> int:
    """The bytes a frame carrying `tensors` (name, shape, dtype) takes beyond the tensors' data."""
    return FRAME_HEADER_BYTES + TENSOR_COUNT_BYTES + sum(tensor_overhead_bytes(*tensor) for tensor in tensors)


def coded_frame_bytes(names: Iterable[str], codec: str, coded_bytes: int) -> int:
    """A frame carrying tensors `names` in `codec` (onnxsplit/codecs), whose encodings take `coded_bytes` in all:
    the codec's bytes hold their own .npy headers, so the frame adds only its header and each tensor's fields."""
    fields = sum(tensor_field_bytes(name, codec) for name in names)
    return FRAME_HEADER_BYTES + TENSOR_COUNT_BYTES + fields + coded_bytes

"""Read an ONNX file's graph without reading its weight bytes.

`onnx.load` parses every inline weight into memory (a 553 MB VGG-16 costs about
1.1 GB of RSS, mmap or not, because protobuf copies each payload), and
`load_external_data=False` helps only when the weights are already external.
No library reads a ModelProto while skipping tensor payloads, so this module
walks the protobuf wire format by hand, only as far as it must: it copies every
field of the model and of its graph verbatim, except the payload fields of
large initializers, which it seeks over and records as (offset, length) in the
file. The copied bytes are then parsed by protobuf itself. The result is a
"skeleton" ModelProto whose large initializers keep their name, dims and dtype
but no data.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from splitnn.onnxsplit.core.errors import SplitnnError

# Initializers whose serialized message is at most this size keep their data:
# shape inference needs the values of small constants (Reshape shapes, Slice
# bounds); weights are far larger.
KEEP_DATA_MAX_BYTES = 1024

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
# TensorProto fields that hold the values: float_data, int32_data, string_data,
# int64_data, raw_data, double_data, uint64_data.
_TENSOR_PAYLOAD_FIELDS = {4, 5, 6, 7, 9, 10, 11}
_TENSOR_RAW_DATA = 9

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class InlinePayload:
    """Where an inline initializer's values sit inside the .onnx file."""

    name: str
    offset: int  # byte offset of the payload in the file
    length: int  # bytes of payload in the file
    is_raw: bool  # True when stored as raw_data (the usual case)
    message_offset: int = 0  # the whole TensorProto, for payloads in typed fields
    message_length: int = 0


class _TruncatedError(Exception):
    pass


class _Reader:
    """Cursor over a bytes-like buffer that decodes protobuf wire elements."""

    def __init__(self, buf: mmap.mmap | bytes, start: int, end: int) -> None:
        self.buf = buf
        self.pos = start
        self.end = end

    def varint(self) -> int:
        result = 0
        shift = 0
        while True:
            if self.pos >= self.end:
                raise _TruncatedError
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint longer than 10 bytes")

    def field(self) -> tuple[int, int, int, int, int]:
        """Next field: (number, wire type, start of field, start of value, end of field)."""
        field_start = self.pos
        tag = self.varint()
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            value_start = self.pos
            self.varint()
        elif wire == _I64:
            value_start = self.pos
            self.pos += 8
        elif wire == _I32:
            value_start = self.pos
            self.pos += 4
        elif wire == _LEN:
            length = self.varint()
            value_start = self.pos
            self.pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if self.pos > self.end:
            raise _TruncatedError
        return number, wire, field_start, value_start, self.pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint((number << 3) | _LEN) + _encode_varint(len(payload)) + payload


def _strip_tensor(buf: mmap.mmap, start: int, end: int) -> tuple[bytes, InlinePayload | None, str]:
    """Copy one TensorProto without its payload fields; say where the payload was."""
    reader = _Reader(buf, start, end)
    kept = bytearray()
    payload_offset = -1
    payload_length = 0
    is_raw = False
    name_bytes = b""
    while reader.pos < end:
        number, _wire, field_start, value_start, field_end = reader.field()
        if number in _TENSOR_PAYLOAD_FIELDS:
            if payload_offset < 0:
                payload_offset = value_start
            payload_length += field_end - value_start
            is_raw = is_raw or number == _TENSOR_RAW_DATA
            continue
        if number == 8:  # name
            name_bytes = bytes(buf[value_start:field_end])
        kept += buf[field_start:field_end]
    name = name_bytes.decode("utf-8", errors="replace")
    payload = InlinePayload(name, payload_offset, payload_length, is_raw, start, end - start) if payload_offset >= 0 else None
    return bytes(kept), payload, name


def _strip_graph(buf: mmap.mmap, start: int, end: int, payloads: dict[str, InlinePayload]) -> bytes:
    reader = _Reader(buf, start, end)
    kept = bytearray()
    while reader.pos < end:
        number, wire, field_start, value_start, field_end = reader.field()
        if number == _GRAPH_INITIALIZER and wire == _LEN and field_end - value_start > KEEP_DATA_MAX_BYTES:
            tensor_bytes, payload, name = _strip_tensor(buf, value_start, field_end)
            if payload is not None:
                payloads[name] = payload
            kept += _len_field(_GRAPH_INITIALIZER, tensor_bytes)
        else:
            kept += buf[field_start:field_end]
    return bytes(kept)


def read_skeleton(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, dict[str, InlinePayload]]:
    """Parse `path` into a ModelProto whose large inline initializers carry no data.

    Returns the skeleton and, per stripped initializer, where its payload lies
    in the file. Raises SplitnnError for a missing, empty, truncated or
    non-ONNX file.
    """
    path = Path(path)
    if not path.exists():
        raise SplitnnError(f"model file '{path}' does not exist: check the path")
    if path.is_dir():
        raise SplitnnError(f"'{path}' is a directory, not an ONNX model file: give the .onnx file inside it")
    size = path.stat().st_size
    if size == 0:
        raise SplitnnError(f"'{path}' is empty: it is not an ONNX model; re-export or re-copy the model")
    payloads: dict[str, InlinePayload] = {}
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        reader = _Reader(buf, 0, size)
        kept = bytearray()
        try:
            while reader.pos < size:
                number, wire, field_start, value_start, field_end = reader.field()
                if number == _MODEL_GRAPH and wire == _LEN:
                    kept += _len_field(_MODEL_GRAPH, _strip_graph(buf, value_start, field_end, payloads))
                else:
                    kept += buf[field_start:field_end]
        except _TruncatedError:
            raise SplitnnError(
                f"'{path}' is truncated ({size} bytes, ends inside a record): re-copy or re-export the model"
            ) from None
        except ValueError as exc:
            raise SplitnnError(f"'{path}' is not an ONNX model ({exc} at byte {reader.pos}): give an .onnx file") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(bytes(kept))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise SplitnnError(f"'{path}' is not an ONNX model ({exc}): give an .onnx file") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        missing = "ir_version" if model.ir_version <= 0 else ("graph" if not model.HasField("graph") else "opset_import")
        raise SplitnnError(
            f"'{path}' is not a complete ONNX model (no {missing}): give an .onnx file, re-copying it if it was cut short"
        )
    if not model.graph.output:
        raise SplitnnError(f"'{path}' has a graph with no outputs: it is truncated or not a usable ONNX model")
    return model, payloads

"""Lossy codecs that store fewer bits per value: float16, and int8 with an affine scale per tensor or per
channel. The scales are taken from the tensor being sent (a min and max pass on the device), so they fit every
input rather than a calibration set, and travel with it (8 bytes a tensor, or a channel)."""
from __future__ import annotations

import numpy as np

from splitnn.onnxsplit.codecs.base import npy_array, npy_bytes, pack, unpack


class Float16:
    """Half precision: half the bytes of float32; integer tensors pass as they are."""

    name = "fp16"

    def encode(self, array: np.ndarray) -> bytes:
        # The values first: after the 4-byte length their .npy data starts on an even offset, so a byte shuffle
        # (codecs/lossless.py) of 2-byte values lines up.
        if not np.issubdtype(array.dtype, np.floating):
            return pack(npy_bytes(array), b"")
        return pack(npy_bytes(array.astype(np.float16)), array.dtype.str.encode())

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        payload, dtype = unpack(data)
        array = npy_array(payload)
        return array.astype(np.dtype(dtype.decode())) if dtype else array


class Int8:
    """Affine uint8: value = low + code * step, with low and step per tensor or per channel (axis 1).

    A quarter of float32's bytes plus the scales. The step is (high - low) / 255, so the error is at most half a
    step; a post-ReLU tensor (low = 0) keeps its zeros exact.
    """

    def __init__(self, per_channel: bool = False) -> None:
        self.per_channel = per_channel
        self.name = "int8:channel" if per_channel else "int8"

    def encode(self, array: np.ndarray) -> bytes:
        if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
            return pack(b"", npy_bytes(array))  # as it is
        values = array.astype(np.float32, copy=False)
        axes = tuple(i for i in range(values.ndim) if i != 1) if self.per_channel and values.ndim > 1 else None
        low = values.min(axis=axes, keepdims=True)
        high = values.max(axis=axes, keepdims=True)
        step = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint((values - low) / step), 0, 255).astype(np.uint8)
        scales = np.stack([low.astype(np.float32), step])  # one .npy for both: its header is most of the overhead
        return pack(array.dtype.str.encode(), npy_bytes(codes), npy_bytes(scales))

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        pieces = unpack(data)
        if not pieces[0]:
            return npy_array(pieces[1])
        dtype, codes, scales = pieces
        low, step = npy_array(scales)
        values = low + npy_array(codes).astype(np.float32) * step
        return values.astype(np.dtype(dtype.decode()))

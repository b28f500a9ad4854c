"""int8 with its ranges fixed from calibration data (issue 14): the device and the server both hold them (in
plan.json), so a frame carries the codes alone.

Per channel (axis 1) by default, from the lowest and highest value each channel took over the calibration
inputs; a value outside that range at run time is clipped to it. Against int8 with the ranges taken from each
tensor (codecs/quantized.py) the frame saves the ranges and their .npy header (docs/measurements.md has a
cut's figures), and the device skips a min/max pass; the price is
a step set by the widest input seen, not by the one being sent.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitnn.onnxsplit.codecs.base import npy_array, npy_bytes
from splitnn.onnxsplit.core.records import Record

CALIBRATED = "int8:calibrated"


@dataclass(frozen=True)
class TensorRange(Record):
    """One tensor's calibrated int8 range: value = low + code * step, per channel of axis 1 (one entry each) or for
    the whole tensor (one entry)."""

    name: str
    low: tuple[float, ...]
    step: tuple[float, ...]
    dtype: str = "<f4"  # the tensor's own dtype, given back on decoding


class CalibratedInt8:
    """Affine uint8 with a fixed range (see the module doc)."""

    name = CALIBRATED

    def __init__(self, tensor_range: TensorRange) -> None:
        self.range = tensor_range
        self._low = np.asarray(tensor_range.low, np.float32)
        self._step = np.asarray(tensor_range.step, np.float32)

    def _shaped(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """low and step, broadcastable to a tensor of `shape` (whose channels must be the calibrated ones)."""
        if self._low.size == 1 or len(shape) < 2:
            return self._low.reshape(()), self._step.reshape(())
        if shape[1] != self._low.size:
            raise ValueError(f"tensor '{self.range.name}' has {shape[1]} channels, calibrated for {self._low.size}")
        broadcast = (1, self._low.size) + (1,) * (len(shape) - 2)
        return self._low.reshape(broadcast), self._step.reshape(broadcast)

    def encode(self, array: np.ndarray) -> bytes:
        low, step = self._shaped(array.shape)
        codes = np.clip(np.rint((array.astype(np.float32, copy=False) - low) / step), 0, 255).astype(np.uint8)
        return npy_bytes(codes)

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        codes = npy_array(data)
        if codes.dtype != np.uint8:
            raise ValueError(f"int8:calibrated codes must be uint8, not {codes.dtype}")
        low, step = self._shaped(codes.shape)
        return (low + codes.astype(np.float32) * step).astype(np.dtype(self.range.dtype))


def calibrate_range(name: str, samples: Sequence[np.ndarray], per_channel: bool = True) -> TensorRange:
    """The int8 range of tensor `name` from its values on the calibration inputs (lowest and highest, per channel of
    axis 1 when `per_channel` and the tensor has one)."""
    if not samples:
        raise ValueError("no calibration sample")
    first = samples[0]
    if not np.issubdtype(first.dtype, np.floating):
        raise ValueError(f"tensor '{name}' is {first.dtype}: int8:calibrated applies to floating-point tensors")
    channel = per_channel and first.ndim >= 2
    axes = tuple(i for i in range(first.ndim) if i != 1) if channel else None
    low = np.min([s.min(axis=axes) for s in samples], axis=0)
    high = np.max([s.max(axis=axes) for s in samples], axis=0)
    low, high = np.atleast_1d(low).astype(np.float64), np.atleast_1d(high).astype(np.float64)
    step = np.where(high > low, (high - low) / 255.0, 1.0)
    return TensorRange(name, tuple(float(v) for v in low), tuple(float(v) for v in step), first.dtype.str)

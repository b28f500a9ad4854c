"""int8 with calibrated ranges: both sides hold the ranges, so the frame carries the codes alone."""
from __future__ import annotations

import numpy as np
import pytest

from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.calibrated import CalibratedInt8, calibrate_range
from splitnn.onnxsplit.codecs.specs import canonical_codec, parse_codec, tensor_codecs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.wire import ProtocolError, decode_tensors, encode_tensors
from tests.onnxsplit.codecs.test_codecs import _feature_map


def test_calibrated_ranges_round_trip_within_half_a_step_and_clip_beyond():
    samples = [_feature_map(seed) for seed in range(8)]
    tensor_range = calibrate_range("x", samples)
    assert len(tensor_range.low) == 16 and all(low == 0 for low in tensor_range.low)  # post-ReLU: zeros stay exact
    codec = CalibratedInt8(tensor_range)
    x = samples[3]
    y = codec.decode(codec.encode(x))
    assert y.shape == x.shape and y.dtype == x.dtype
    step = np.asarray(tensor_range.step, np.float32)[None, :, None, None]
    assert np.all(np.abs(y - x) <= step / 2 + 1e-6) and np.all(y[x == 0] == 0)
    big = x * 3  # beyond every calibrated high: clipped to it
    high = np.asarray(tensor_range.low) + 255 * np.asarray(tensor_range.step)
    assert np.allclose(codec.decode(codec.encode(big)).max(axis=(0, 2, 3)), high, rtol=1e-5)
    # The codes and one .npy header: about a quarter of float32's bytes, no ranges on the wire.
    assert len(codec.encode(x)) == x.size + (len(Raw().encode(x)) - 4 * x.size)
    with pytest.raises(ValueError, match="channels"):
        codec.encode(np.zeros((1, 8, 4, 4), np.float32))


def test_the_wire_decodes_a_calibrated_tensor_only_with_its_range():
    x = _feature_map()
    codecs = tensor_codecs("int8:calibrated+lossless", {"x": calibrate_range("x", [x])})
    ids = np.arange(4, dtype=np.int64)
    payload = encode_tensors({"x": x, "ids": ids}, codecs)  # a tensor without a range travels plain
    got = decode_tensors(payload, codecs)
    assert np.array_equal(got["ids"], ids) and np.allclose(got["x"], x, atol=float(x.max()) / 255)
    with pytest.raises(ProtocolError, match="holds no calibration"):
        decode_tensors(payload)
    assert canonical_codec("INT8:Calibrated") == "int8:calibrated"
    with pytest.raises(SplitnnError, match="calibrated range"):
        parse_codec("int8:calibrated")
    with pytest.raises(SplitnnError, match="unknown codec"):
        canonical_codec("int8:calibrated+zip")

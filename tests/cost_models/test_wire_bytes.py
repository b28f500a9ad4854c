"""The planner's count of the bytes around the tensors equals what the wire encoder writes."""
from __future__ import annotations

import numpy as np

from splitnn.cost_models.wire_bytes import frame_overhead_bytes
from splitnn.onnxsplit.runtime.wire import REQUEST, Frame, encode_frame


def test_frame_overhead_matches_the_encoder():
    cases = [
        {},
        {"dense_60": np.zeros((1, 10), np.float32), "dense_40": np.zeros((1, 2), np.float32)},
        {"x": np.zeros((1, 3, 224, 224), np.float32), "ids": np.zeros((1, 128), np.int64),
         "mask": np.zeros((2, 3), bool), "a/long name:0": np.zeros((7,), np.float16)},
    ]
    for tensors in cases:
        data = sum(a.nbytes for a in tensors.values())
        wire = len(encode_frame(Frame(REQUEST, 1, tensors=tensors)))
        assert wire - data == frame_overhead_bytes([(n, a.shape, a.dtype.str) for n, a in tensors.items()])


def test_a_coded_frame_is_counted_as_the_encoder_writes_it():
    """partition --codec prices the chosen cut's request at these bytes (issue 14)."""
    from splitnn.cost_models.wire_bytes import coded_frame_bytes
    from splitnn.onnxsplit.codecs.specs import parse_codec

    tensors = {"relu3_out": np.maximum(np.random.default_rng(0).standard_normal((1, 64, 13, 13)), 0).astype(np.float32),
               "a/long name:0": np.ones((7,), np.float32)}
    for spec in ("int8", "fp16+lossless", "int8:channel+lossless"):
        codec = parse_codec(spec)
        coded = sum(len(codec.encode(a)) for a in tensors.values())
        assert len(encode_frame(Frame(REQUEST, 1, tensors=tensors), codec)) == coded_frame_bytes(tensors, codec.name, coded)

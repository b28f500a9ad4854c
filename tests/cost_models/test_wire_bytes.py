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

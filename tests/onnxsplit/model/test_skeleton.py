from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.skeleton import KEEP_DATA_MAX_BYTES, read_skeleton
from tests.helpers import make_model, tensor


def _model():
    big = np.arange(4096, dtype=np.float32).reshape(64, 64)
    small = np.array([1, 64], dtype=np.int64)
    nodes = [helper.make_node("MatMul", ["x", "big"], ["h"]), helper.make_node("Reshape", ["h", "small"], ["y"])]
    return make_model(nodes, [tensor("x", [1, 64])], [tensor("y", [1, 64])],
                      [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")]), big


def test_large_payloads_are_skipped_and_located(tmp_path):
    model, big = _model()
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    skeleton, payloads = read_skeleton(path)
    by_name = {t.name: t for t in skeleton.graph.initializer}
    assert not by_name["big"].raw_data and list(by_name["big"].dims) == [64, 64]
    assert numpy_helper.to_array(by_name["small"]).tolist() == [1, 64]  # small constants keep their data
    assert set(payloads) == {"big"}
    raw = path.read_bytes()
    payload = payloads["big"]
    assert payload.length == big.nbytes > KEEP_DATA_MAX_BYTES
    assert raw[payload.offset : payload.offset + payload.length] == big.tobytes()
    # Everything else is kept verbatim.
    assert [n.op_type for n in skeleton.graph.node] == ["MatMul", "Reshape"]
    assert skeleton.opset_import[0].version == 13


def test_every_truncation_is_refused(tmp_path):
    model, _ = _model()
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    refused = 0
    for length in range(1, len(data), 97):
        path.write_bytes(data[:length])
        with pytest.raises(SplitnnError):
            read_skeleton(path)
        refused += 1
    assert refused > 100


@pytest.mark.parametrize("content", [b"hello, this is not a model\n", b"\x00" * 64, bytes(range(256)) * 4, b""])
def test_not_onnx(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(SplitnnError, match="not|empty"):
        read_skeleton(path)


def test_missing_file(tmp_path):
    with pytest.raises(SplitnnError, match="does not exist"):
        read_skeleton(tmp_path / "nope.onnx")

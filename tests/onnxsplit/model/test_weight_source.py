from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import (
    WeightSource,
    model_reading_weights_in_place,
    open_in_place,
)
from tests.helpers import load_proto, make_model, session, tensor, weight


def _typed_field_weight(name: str, shape, seed: int) -> onnx.TensorProto:
    """A weight stored in float_data, as some exporters still write it, not raw_data."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, shape, values.flatten().tolist(), raw=False)


def _two_matmuls() -> onnx.ModelProto:
    return make_model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        [tensor("x", [2, 64])], [tensor("y", [2, 32])],
        [weight("w1", [64, 128], seed=1), _typed_field_weight("w2", [128, 32], seed=2)],
    )


def test_in_place_session_matches_the_original(tmp_path):
    model = _two_matmuls()
    graph = load_proto(model, tmp_path)
    assert graph.initializers["w1"].raw and not graph.initializers["w2"].raw
    in_place = model_reading_weights_in_place(graph.model, graph.initializers, graph.path)
    w1 = next(t for t in in_place.graph.initializer if t.name == "w1")
    # The raw payload is referenced in the .onnx file itself, not copied.
    assert w1.data_location == TensorProto.EXTERNAL and not w1.raw_data
    assert {e.key: e.value for e in w1.external_data}["location"] == "model.onnx"
    feeds = random_inputs(graph)
    expected = session(model).run(["y"], feeds)[0]
    got = open_in_place(graph.model, graph.initializers, graph.path).run(["y"], feeds)[0]
    np.testing.assert_array_equal(got, expected)


def test_weight_bytes_from_inline_and_external_files(tmp_path):
    model = _two_matmuls()
    onnx.save_model(_two_matmuls(), str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    graph = load_graph(tmp_path / "ext.onnx")
    assert graph.initializers["w1"].location == "external"
    with WeightSource.of(graph) as weights:
        for tensor_proto in model.graph.initializer:
            expected = numpy_helper.to_array(tensor_proto)
            got = np.frombuffer(weights.read(tensor_proto.name), dtype=np.float32).reshape(expected.shape)
            np.testing.assert_array_equal(got, expected)
    got = open_in_place(graph.model, graph.initializers, graph.path).run(["y"], random_inputs(graph))[0]
    np.testing.assert_array_equal(got, session(model).run(["y"], random_inputs(graph))[0])


def test_copy_into_appends_the_same_bytes_as_read(tmp_path):
    onnx.save_model(_two_matmuls(), str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    for graph in (load_proto(_two_matmuls(), tmp_path), load_graph(tmp_path / "ext.onnx")):
        with WeightSource.of(graph) as weights, open(tmp_path / "blob.bin", "wb") as blob:
            blob.write(b"head")  # appended after what the blob already holds
            lengths = [weights.copy_into(name, blob) for name in ("w1", "w2")]
            expected = b"head" + b"".join(bytes(weights.read(name)) for name in ("w1", "w2"))
        assert lengths == [64 * 128 * 4, 128 * 32 * 4]
        assert (tmp_path / "blob.bin").read_bytes() == expected

"""The one way splitnn opens onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from splitnn.onnxsplit.core.ort_session import create_session
from tests.helpers import make_model, tensor


def test_a_failed_run_is_an_exception_and_nothing_on_stderr(capfd):
    """issue 30, item 9: onnxruntime logged its own coloured `[E:onnxruntime:...]` line for a run that failed,
    before splitnn's one line that reports the same failure from the exception."""
    shape_times_k = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Mul", ["s", "k"], ["s2"]),
                     helper.make_node("Reshape", ["x", "s2"], ["y"])]  # [1, 4] reshaped to [3, 4]: fails when run
    model = make_model(shape_times_k, [tensor("x", [1, 4])], [tensor("y", None)],
                       [numpy_helper.from_array(np.array([3, 1], np.int64), "k")])
    session = create_session(model)
    capfd.readouterr()
    with pytest.raises(Exception, match="cannot be reshaped"):
        session.run(None, {"x": np.zeros((1, 4), np.float32)})
    assert "onnxruntime" not in capfd.readouterr().err
    unknown = make_model([helper.make_node("Foo", ["x"], ["y"], domain="com.example")], [tensor("x", [1, 4])],
                         [tensor("y", [1, 4])])
    unknown.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(Exception, match="Foo"):
        create_session(unknown)
    assert "onnxruntime" not in capfd.readouterr().err

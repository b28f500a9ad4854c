"""Requests from several devices in one session run (issue 15, item 4): only where the part really takes a batch,
each device gets its own rows, and one device's bad tensors stay its own error."""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.runtime.batching import Batcher, batchable_session
from splitnn.onnxsplit.runtime.server import server_part_path


def _part(lenet_plan):  # type: ignore[no-untyped-def]
    path = server_part_path(lenet_plan)
    assert path is not None
    single = create_session(path)
    return path, single, [i.name for i in single.get_inputs()], [o.name for o in single.get_outputs()]


def _item(single, seed: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    spec = single.get_inputs()[0]
    return {spec.name: np.random.default_rng(seed).standard_normal(spec.shape).astype(np.float32)}


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_rows(lenet_plan):
    path, single, inputs, outputs = _part(lenet_plan)
    check = batchable_session(path, single)
    assert check.session is not None, check.reason
    # A long wait and a batch of exactly the four senders: the batch closes when the fourth arrives.
    batcher = Batcher(check.session, inputs, outputs, max_batch=4, max_wait_s=5.0,
                      alone=lambda feeds: single.run(outputs, feeds), senders=lambda: 4)
    items = [_item(single, seed) for seed in range(4)]
    answers: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(4)

    def send(k: int) -> None:
        start.wait()
        answers[k] = batcher.run(items[k])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    batcher.close()
    assert batcher.counts.runs == 1 and batcher.counts.largest == 4
    for k, item in enumerate(items):
        np.testing.assert_allclose(answers[k][0], single.run(outputs, item)[0], rtol=1e-4, atol=1e-5)


def test_a_request_that_does_not_fit_is_its_own_error(lenet_plan):
    path, single, inputs, outputs = _part(lenet_plan)
    check = batchable_session(path, single)
    batcher = Batcher(check.session, inputs, outputs, max_batch=2, max_wait_s=5.0,
                      alone=lambda feeds: single.run(outputs, feeds), senders=lambda: 2)
    good = _item(single, 0)
    bad = {inputs[0]: good[inputs[0]].astype(np.float64)}  # the wrong dtype
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def send(label: str, feeds: dict[str, np.ndarray]) -> None:
        start.wait()
        try:
            results[label] = batcher.run(feeds)
        except Exception as exc:  # what the server turns into an error frame
            results[label] = exc

    threads = [threading.Thread(target=send, args=a) for a in (("good", good), ("bad", bad))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    batcher.close()
    assert isinstance(results["bad"], Exception)
    np.testing.assert_allclose(results["good"][0], single.run(outputs, good)[0], rtol=1e-5)  # type: ignore[index]


def _tiny(tmp_path, node: onnx.NodeProto, initializers=()) -> tuple:  # type: ignore[no-untyped-def]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], list(initializers))
    path = tmp_path / "part.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, create_session(path)


@pytest.mark.parametrize("case", ["keeps the first item", "mixes items"])
def test_a_part_that_fixes_or_mixes_the_batch_is_served_one_at_a_time(tmp_path, case):
    if case == "keeps the first item":  # a slice of the first axis: a batch of 2 comes out as one row
        bounds = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 1), ("a", 0))]
        path, single = _tiny(tmp_path, helper.make_node("Slice", ["x", "s", "e", "a"], ["y"]), bounds)
        expected = "has shape [1, 4]"
    else:  # a softmax across the first axis: the shapes agree, the values do not
        path, single = _tiny(tmp_path, helper.make_node("Softmax", ["x"], ["y"], axis=0))
        expected = "differs from the item run alone"
    check = batchable_session(path, single)
    assert check.session is None and expected in check.reason


def test_a_reshape_to_a_batch_of_one_is_opened_and_checked(tmp_path):
    """Exporters leave Reshape(x, [1, -1]) behind (PyTorch's flatten at a batch of 1, constant folding): the
    batched copy copies the first dimension instead, and the check confirms it."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])
    path, single = _tiny(tmp_path, helper.make_node("Reshape", ["x", "shape"], ["y"]), [shape])
    check = batchable_session(path, single)
    assert check.session is not None, check.reason
    items = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(check.session.run(None, {"x": items})[0], items)

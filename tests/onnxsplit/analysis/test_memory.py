from __future__ import annotations

from onnx import helper

from splitnn.onnxsplit.analysis.memory import live_bytes_per_node, peak_activation_bytes
from tests.helpers import load_proto, make_model, tensor


def test_chain_frees_after_last_reader(tmp_path):
    # x(400 B) -> a(400) -> b(400) -> y(400): at most two tensors live at once.
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Relu", ["b"], ["y"])]
    graph = load_proto(make_model(nodes, [tensor("x", [100])], [tensor("y", [100])]), tmp_path)
    assert live_bytes_per_node(graph) == [800, 800, 800]
    assert peak_activation_bytes(graph) == 800


def test_skip_connection_holds_the_branch(tmp_path):
    # x -> a -> b -> c ; y = a + c: a stays alive across b and c.
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Relu", ["b"], ["c"]),
        helper.make_node("Add", ["a", "c"], ["y"]),
    ]
    graph = load_proto(make_model(nodes, [tensor("x", [100])], [tensor("y", [100])]), tmp_path)
    # step0: x+a ; step1: a+b ; step2: a+b+c ; step3: a+c+y
    assert live_bytes_per_node(graph) == [800, 800, 1200, 1200]
    assert peak_activation_bytes(graph) == 1200
    assert peak_activation_bytes(graph) < sum(graph.info(n).nbytes for n in ["x", "a", "b", "c", "y"])

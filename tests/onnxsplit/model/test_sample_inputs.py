"""Random inputs stay valid: integer inputs that index a table stay below its length."""
from __future__ import annotations

from onnx import TensorProto, helper

from splitnn.onnxsplit.artifacts.plan_file import header_fields
from splitnn.onnxsplit.model.sample_inputs import index_bounds, random_inputs
from tests.helpers import load_proto, make_model, session, tensor, weight


def _embedding_model():
    """Token ids into a 50-row table, token types (through a Cast and an Unsqueeze) into a 2-row table, and a
    count that indexes nothing."""
    nodes = [
        helper.make_node("Gather", ["words", "ids"], ["w"], name="word_embedding"),
        helper.make_node("Cast", ["types"], ["types32"], name="cast", to=TensorProto.INT32),
        helper.make_node("Gather", ["kinds", "types32"], ["k"], name="type_embedding"),
        helper.make_node("Add", ["w", "k"], ["e"], name="add"),
        helper.make_node("Cast", ["count"], ["count_f"], name="count_cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["e", "count_f"], ["y"], name="scale"),
    ]
    inputs = [tensor("ids", [1, 6], TensorProto.INT64), tensor("types", [1, 6], TensorProto.INT64),
              tensor("count", [1, 1, 1], TensorProto.INT64)]
    return make_model(nodes, inputs, [tensor("y", [1, 6, 4])], [weight("words", [50, 4], 1), weight("kinds", [2, 4], 2)])


def test_integer_inputs_stay_below_the_table_they_index(tmp_path):
    model = _embedding_model()
    graph = load_proto(model, tmp_path, name="embedding.onnx")
    assert index_bounds(graph) == {"ids": 50, "types": 2}  # the count indexes nothing
    for seed in range(5):
        feeds = random_inputs(graph, seed)
        assert feeds["types"].max() <= 1 and feeds["ids"].max() < 10 and feeds["count"].max() < 10
        session(model).run(None, feeds)  # raises on an index out of the table
    assert any(random_inputs(graph, seed)["types"].max() == 1 for seed in range(5))  # both rows are drawn
    # The plan file keeps the bound, so benches of the plan folder draw valid inputs without the model.
    inputs = header_fields(graph, tmp_path)["inputs"]
    assert inputs["types"].index_bound == 2 and inputs["count"].index_bound is None

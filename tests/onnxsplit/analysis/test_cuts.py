"""Cuts: what crosses each frontier, and the rule that the parts chain back to the model."""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.model.loading import load_graph
from tests.helpers import (
    CLS_MODEL,
    DET_MODEL,
    REC_MODEL,
    load_proto,
    make_model,
    max_chain_error,
    rapidocr_model,
    tensor,
    weight,
)


@pytest.fixture(scope="module")
def resnet(sample_path):
    path = sample_path("resnet18", 64)
    return analyze(load_graph(path)), onnx.load(str(path))


def test_resnet_has_single_and_multi_tensor_cuts(resnet):
    result, _ = resnet
    cuts = result.cuts
    assert cuts[0].tensors == ("input",) and cuts[0].bytes == 3 * 64 * 64 * 4 and cuts[0].device_macs == 0
    assert cuts[-1].tensors == () and cuts[-1].bytes == 0 and cuts[-1].device_macs == result.totals.macs
    assert cuts[-1].device_param_bytes == result.totals.param_bytes
    sizes = {len(cut.tensors) for cut in cuts[1:-1]}
    assert sizes == {1, 2}  # block boundaries: one tensor; inside a block: the skip and the branch
    inside = next(cut for cut in cuts if len(cut.tensors) == 2)
    assert inside.bytes == sum(result.graph.info(t).nbytes for t in inside.tensors)
    # Device totals grow monotonically with the cut position.
    for before, after in zip(cuts, cuts[1:]):
        assert after.device_macs >= before.device_macs
        assert after.device_param_bytes >= before.device_param_bytes
        assert after.device_peak_bytes >= before.device_peak_bytes
        assert before.device_macs + before.server_macs == result.totals.macs


def test_every_resnet_cut_chains_back(resnet):
    result, full = resnet
    worst, checked = max_chain_error(result, full)
    assert checked == len(result.cuts) == 70
    assert worst < 1e-4


def test_every_cut_of_a_real_exported_model_chains_back():
    path = rapidocr_model(CLS_MODEL)
    result = analyze(load_graph(path, {"x": (1, 3, 48, 192)}))
    worst, checked = max_chain_error(result, onnx.load(str(path)))
    assert checked == len(result.cuts) > 200
    assert worst < 1e-5


@pytest.mark.parametrize("name,shape,stride", [(DET_MODEL, (1, 3, 64, 64), 7), (REC_MODEL, (1, 3, 48, 96), 9)])
def test_cuts_of_larger_exported_models_chain_back(name, shape, stride):
    path = rapidocr_model(name)
    result = analyze(load_graph(path, {"x": shape}))
    ids = set(range(0, len(result.cuts), stride)) | {len(result.cuts) - 1}
    worst, checked = max_chain_error(result, onnx.load(str(path)), ids)
    assert checked == len(ids)
    assert worst < 1e-4


def test_mobilenet_and_lenet_cuts_chain_back(sample_path):
    for name, size in (("mobilenet", 32), ("lenet5", None)):
        path = sample_path(name, size)
        result = analyze(load_graph(path))
        worst, checked = max_chain_error(result, onnx.load(str(path)))
        assert checked == len(result.cuts) and worst < 1e-4


def _if_model():
    """y = If(sum(x) > 0, then relu(x)*w, else x - w) followed by a Relu; w is an outer initializer."""
    then_graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "w"], ["t"])],
        "then", [], [tensor("t", [2, 3])],
    )
    else_graph = helper.make_graph([helper.make_node("Sub", ["x", "w"], ["e"])], "else", [], [tensor("e", [2, 3])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Relu", ["branch"], ["y"]),
    ]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    return make_model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3])], [weight("w", (2, 3)), zero])


def test_if_is_opaque_and_its_outer_reads_cross(tmp_path):
    model = _if_model()
    result = analyze(load_proto(model, tmp_path))
    assert "If" in result.unknown_ops and "opaque" in result.warnings[0]
    # The If reads x from the enclosing scope: the cut just before it must carry x.
    before_if = next(cut for cut in result.cuts if cut.last_device_node == "Greater_1")
    assert set(before_if.tensors) == {"x", "cond"}
    worst, checked = max_chain_error(result, model)
    assert checked == len(result.cuts) == 5 and worst == 0.0


def test_loop_is_opaque(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "x"], ["acc_out"])],
        "body",
        [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("acc_in", [4])],
        [tensor("cond_out", [], TensorProto.BOOL), tensor("acc_out", [4])],
    )
    trip = helper.make_tensor("trip", TensorProto.INT64, [], [3])
    nodes = [
        helper.make_node("Relu", ["x"], ["start"]),
        helper.make_node("Loop", ["trip", "", "start"], ["total"], name="repeat", body=body),
        helper.make_node("Relu", ["total"], ["y"]),
    ]
    model = make_model(nodes, [tensor("x", [4])], [tensor("y", [4])], [trip])
    result = analyze(load_proto(model, tmp_path))
    assert result.unknown_ops == {"Loop": ["repeat"]}
    worst, checked = max_chain_error(result, model)
    assert checked == 4 and worst < 1e-6


def test_reply_bytes_are_the_outputs_computed_on_the_server(tmp_path):
    # x -> Relu -> a (a model output, 4x4 floats) -> Sigmoid -> b (a model output, 4x4 floats)
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"])],
        [tensor("x", [4, 4])], [tensor("a", [4, 4]), tensor("b", [4, 4])],
    )
    path = tmp_path / "two_outputs.onnx"
    onnx.save(model, str(path))
    cuts = analyze(load_graph(path)).cuts
    # Cut 0: both outputs come back; cut 1: only b (a was made on the device); cut 2: nothing is sent.
    assert [c.reply_bytes for c in cuts] == [128, 64, 0]

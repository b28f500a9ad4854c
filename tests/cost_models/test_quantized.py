"""int8 models as onnxruntime's quantizer writes them, QDQ and operator form (issue 11, item 5)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.chain import PartStep
from splitnn.onnxsplit.artifacts.parts import extract_parts
from splitnn.onnxsplit.artifacts.verification import UNFUSED_LEVEL, VERIFY_CONFIG, reference_outputs, unfused_max_error
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from tests.helpers import load_proto, make_model, tensor, weight


def _float_model(path):
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    inits = [weight("w1", [8, 3, 3, 3], 1), weight("b1", [8], 2), weight("w2", [16, 8, 3, 3], 3),
             weight("fc", [16, 10], 4)]
    onnx.save_model(make_model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor("y", [1, 10])], inits), str(path))


class _Calibration:
    """A few calibration inputs for quantize_static."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module", params=["QDQ", "QOperator"])
def quantized(request, tmp_path_factory):
    from onnxruntime.quantization import QuantFormat, quantize_static

    folder = tmp_path_factory.mktemp(request.param)
    _float_model(folder / "float.onnx")
    quantize_static(str(folder / "float.onnx"), str(folder / "int8.onnx"), _Calibration(),
                    quant_format=getattr(QuantFormat, request.param))
    return request.param, folder


def test_macs_are_counted_as_the_float_models(quantized):
    form, folder = quantized
    float_macs = analyze(load_proto(onnx.load(str(folder / "float.onnx")), folder, name="f.onnx")).totals.macs
    analysis = analyze(load_proto(onnx.load(str(folder / "int8.onnx")), folder, name="q.onnx"))
    ops = {node.op_type for node in analysis.graph.nodes}
    assert ({"QLinearConv"} <= ops) if form == "QOperator" else ({"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops)
    assert analysis.unknown_ops == {}
    conv_macs = 16 * 16 * (8 * 3 * 9 + 16 * 8 * 9)  # both convolutions, same in every form
    convs = sum(c.macs for c, n in zip(analysis.nodes, analysis.graph.nodes)
                if n.op_type in ("Conv", "QLinearConv") and not c.static)
    assert convs == conv_macs and analysis.totals.macs >= conv_macs
    assert float_macs >= conv_macs


def test_an_int8_cut_sends_a_quarter_of_the_float_bytes(quantized):
    form, folder = quantized
    analysis = analyze(load_proto(onnx.load(str(folder / "int8.onnx")), folder, name="q.onnx"))
    graph = analysis.graph
    int8_cuts = [c for c in analysis.cuts if len(c.tensors) == 1 and graph.info(c.tensors[0]).dtype in ("int8", "uint8")]
    assert int8_cuts, "the quantized model has a cut through an int8 tensor"
    relu1_int8 = [c for c in int8_cuts if graph.info(c.tensors[0]).shape == (1, 8, 16, 16)]
    assert relu1_int8 and relu1_int8[0].bytes == 8 * 16 * 16 == 4 * 8 * 16 * 16 // 4  # float would be 4x
    # Weight dequantizations read initializers only: static, so no cut sends a weight.
    assert all(not graph.is_constant(t) for c in analysis.cuts for t in c.tensors)


def test_every_cut_of_the_int8_model_chains_back(quantized):
    """Like with like (issue 30, item 0): the whole model and the parts all run unfused (verification's
    UNFUSED_LEVEL). At onnxruntime's default level a cut through a QDQ group leaves it unfused in the parts while the
    whole model runs it as one u8s8 kernel, whose pairs of products saturate in 16 bits on an x86 CPU without VNNI
    (0.296 on an AMD EPYC, every run): unfused, both sides run the same kernels on every CPU."""
    _, folder = quantized
    model = onnx.load(str(folder / "int8.onnx"))
    analysis = analyze(load_graph(folder / "int8.onnx"))
    graph = analysis.graph
    feeds = random_inputs(graph)
    reference = reference_outputs(graph, feeds, UNFUSED_LEVEL)
    worst, checked = 0.0, 0
    for cut in analysis.cuts:
        parts = {side: part for side, part in zip(("device", "server"), extract_parts(graph, model, cut))
                 if part.model is not None}
        steps = [PartStep(side, part.inputs, part.outputs) for side, part in parts.items()]
        def unfused(side, parts=parts):
            return create_session(parts[side].model, level=UNFUSED_LEVEL, config=VERIFY_CONFIG)

        error, _ = unfused_max_error(folder, [steps], feeds, reference, 1e-5, 0.0, session_of=unfused)
        worst, checked = max(worst, error), checked + 1
    assert checked == len(analysis.cuts) and worst < 1e-5

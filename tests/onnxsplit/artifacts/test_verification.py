"""An int8 model split where it is int8: verified like with like, the bound stated, a wrong part refused (issue 30,
items 0 and 5)."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.plan_file import load_verification_data
from splitnn.onnxsplit.artifacts.verification import (
    UNFUSED_LEVEL,
    VERIFY_CONFIG,
    compare_outputs,
    is_int8_model,
    output_quantization_step,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical import export
from splitnn.onnxsplit.vertical.adaptive import plan_adaptive, write_adaptive
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import session

# A cut through an int8 tensor of the LeNet-5 sample quantized (QDQ): onnxruntime fuses the first convolution's
# group (DequantizeLinear, Conv, Relu, QuantizeLinear) into QLinearConv in the whole model and not in the device part
# (converted at the basic level), and the outputs differ by two steps of their quantization (0.0237 here), where the
# verification refused every such cut with an atol of 1e-4.
INT8_CUT = "relu1_out_QuantizeLinear_Output"


class _Calibration:
    def __init__(self, shape) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"input": rng.random(shape, dtype=np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module")
def lenet_int8(sample_path, tmp_path_factory):
    from onnxruntime.quantization import QuantFormat, quantize_static

    source = sample_path("lenet5")
    dims = onnx.load(str(source), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value for d in dims]
    path = tmp_path_factory.mktemp("lenet-int8") / "lenet5-int8.onnx"
    quantize_static(str(source), str(path), _Calibration(shape), quant_format=QuantFormat.QDQ)
    return path


def _plan(path, tensors):
    analysis = analyze(load_graph(path))
    return analysis, plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                                forced_tensors=tensors)


def _output_scale(path) -> float:
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    dequantize = producer[model.graph.output[0].name]
    assert dequantize.op_type == "DequantizeLinear"
    scale = next(i for i in model.graph.initializer if i.name == dequantize.input[1])
    return float(numpy_helper.to_array(scale))


def test_a_qdq_model_split_where_it_is_int8_is_verified_and_written_with_its_bound(lenet_int8, tmp_path):
    analysis, plan = _plan(lenet_int8, (INT8_CUT,))
    assert analysis.graph.info(INT8_CUT).dtype == "int8"
    document = write_split(analysis, plan, tmp_path / "split")  # refused before: differ by 0.0237 (atol 0.0001)
    check = document.verification
    step = _output_scale(lenet_int8)
    assert check.quantization_step == pytest.approx(step)
    assert check.unfused_max_abs_err is not None and check.unfused_max_abs_err <= 1e-4  # like with like: exact
    steps = check.int8_allowance / step
    assert steps >= 1 and math.isclose(steps, round(steps), abs_tol=1e-3)  # whole steps of the output
    assert check.atol == pytest.approx(1e-4 + check.int8_allowance) and check.max_abs_err <= check.atol
    assert check.passed and check.device_artifact == "device/model.ort"
    assert "int8 model" in check.int8_note() and f"{step:.3g}" in check.int8_note()
    written = json.loads((tmp_path / "split" / "plan.json").read_text())["verification"]  # stated in the plan
    assert written["quantization_step"] == pytest.approx(step) and written["atol"] == pytest.approx(check.atol)
    assert written["unfused_max_abs_err"] == check.unfused_max_abs_err

    # What run-bench does: the parts as served (the .ort, the server part at onnxruntime's default level) against
    # the reference kept in the folder, within the plan's atol.
    feeds, reference = load_verification_data(tmp_path / "split")
    parts = document.parts
    pool = dict(feeds)
    for file, part in ((tmp_path / "split" / "device" / "model.ort", parts.device),
                       (tmp_path / "split" / "server" / "model.onnx", parts.server)):
        pool.update(zip(part.outputs, session(str(file)).run(list(part.outputs), {n: pool[n] for n in part.inputs})))
    assert compare_outputs({n: pool[n] for n in reference}, reference, check.atol, check.rtol)[1]


def test_every_int8_cut_of_the_quantized_sample_is_written(lenet_int8, tmp_path):
    analysis = analyze(load_graph(lenet_int8))
    graph = analysis.graph
    cuts = [c.tensors for c in analysis.cuts if len(c.tensors) == 1 and graph.info(c.tensors[0]).dtype == "int8"]
    assert len(cuts) >= 5
    for number, tensors in enumerate(cuts):
        _, plan = _plan(lenet_int8, tensors)
        check = write_split(analysis, plan, tmp_path / f"split{number}", ort_format=number % 2 == 0).verification
        assert check.unfused_max_abs_err <= 1e-4 and check.max_abs_err <= check.atol, tensors


def test_a_part_that_is_wrong_by_one_step_of_the_cut_is_refused(lenet_int8, tmp_path, monkeypatch):
    """The server part reads the cut's int8 tensor with its zero point moved by one: the like-with-like check
    refuses it, with nothing written."""
    extract = export.extract_parts

    def corrupted(graph, model, cut):
        device, server = extract(graph, model, cut)
        nodes = [n for n in server.model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == INT8_CUT]
        assert nodes
        zero_point = next(i for i in model.graph.initializer if i.name == nodes[0].input[2])
        moved = numpy_helper.from_array((numpy_helper.to_array(zero_point).astype(np.int16) + 1).astype(np.int8),
                                        "moved_zero_point")
        server.model.graph.initializer.append(moved)
        for node in nodes:
            node.input[2] = "moved_zero_point"
        return device, server

    monkeypatch.setattr(export, "extract_parts", corrupted)
    analysis, plan = _plan(lenet_int8, (INT8_CUT,))
    with pytest.raises(SplitnnError, match="with both run unfused at onnxruntime's basic level") as refused:
        write_split(analysis, plan, tmp_path / "split")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "split").exists()


def test_an_adaptive_plan_of_an_int8_model_is_verified_like_with_like(lenet_int8, tmp_path):
    analysis, plan = _plan(lenet_int8, None)
    adaptive = plan_adaptive(plan, 0.1e6, 100e6)
    for ort_format in (True, False):
        check = write_adaptive(analysis, adaptive, tmp_path / f"ad{ort_format}", ort_format=ort_format).verification
        assert check.unfused_max_abs_err is not None and check.unfused_max_abs_err <= 1e-4
        assert check.quantization_step == pytest.approx(_output_scale(lenet_int8))
        assert check.max_abs_err <= check.atol


def test_the_unfused_sessions_run_no_fused_int8_kernel(lenet_int8, tmp_path):
    """The like-with-like check holds on every x86 CPU because no session of it runs a fused integer kernel (whose
    u8s8 products saturate without VNNI): MLAS cannot be made to take its non-VNNI path on a CPU with VNNI, so
    this is what is checked here. At onnxruntime's default level the same model runs fused kernels."""
    fused_ops = {"QLinearConv", "QGemm", "QLinearMatMul", "QLinearAdd", "QLinearAveragePool", "MatMulIntegerToFloat"}

    def ops_run(level):
        prefix = tmp_path / f"profile-{level}"
        ran = create_session(lenet_int8, level=level, config=VERIFY_CONFIG, profile_prefix=prefix)
        ran.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})
        events = json.loads(open(ran.end_profiling()).read())
        return {e["args"].get("op_name") for e in events if e.get("cat") == "Node"}

    assert ops_run(UNFUSED_LEVEL) & fused_ops == set()
    assert ops_run(None) & fused_ops  # what the fused whole model runs


def test_the_output_step_is_the_last_dequantization_scale(lenet_int8, tmp_path, sample_path):
    graph = load_graph(lenet_int8)
    assert is_int8_model(graph)
    assert output_quantization_step(graph) == pytest.approx(_output_scale(lenet_int8))
    float_graph = load_graph(sample_path("lenet5"))
    assert not is_int8_model(float_graph) and output_quantization_step(float_graph) is None


@pytest.mark.parametrize("form", ["QOperator", "dynamic"])
def test_the_other_int8_forms_are_verified_like_with_like(form, sample_path, tmp_path):
    """QOperator (QLinearConv, QGemm with int8 activations: onnxruntime 1.32.0 cannot load it with
    session.x64quantprecision, which verification therefore does not set) and dynamic quantization (no output step:
    what the fusions move is allowed for as measured)."""
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    path = tmp_path / f"lenet5-{form}.onnx"
    if form == "dynamic":
        quantize_dynamic(str(sample_path("lenet5")), str(path))
    else:
        quantize_static(str(sample_path("lenet5")), str(path), _Calibration([1, 1, 32, 32]),
                        quant_format=QuantFormat.QOperator)
    analysis = analyze(load_graph(path))
    singles = [c.tensors for c in analysis.cuts if len(c.tensors) == 1]
    middle = singles[len(singles) // 2]
    _, plan = _plan(path, middle)
    check = write_split(analysis, plan, tmp_path / "split").verification
    assert check.unfused_max_abs_err is not None and check.unfused_max_abs_err <= 1e-4
    assert check.max_abs_err <= check.atol
    assert (check.quantization_step is None) == (form == "dynamic")

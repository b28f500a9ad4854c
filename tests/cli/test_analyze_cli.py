"""`splitnn analyze` run as a user runs it: a child process, real files."""
from __future__ import annotations

import csv
import json

import onnx
import pytest
from onnx import helper

from tests.helpers import CLS_MODEL, make_model, rapidocr_model, run_cli, tensor


def test_json_has_the_documented_fields(sample_path):
    proc = run_cli("analyze", str(sample_path("resnet18", 64)), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"inputs", "nodes", "totals", "cuts", "unknown_ops"} <= set(data)
    assert data["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert {"name", "op_type", "macs", "params", "param_bytes", "output_bytes"} <= set(data["nodes"][0])
    assert set(data["totals"]) >= {"macs", "params", "param_bytes", "peak_activation_bytes"}
    assert data["totals"]["params"] == 11_689_512
    assert sum(n["macs"] for n in data["nodes"]) == data["totals"]["macs"]
    cut = data["cuts"][5]
    assert {"id", "tensors", "bytes", "device_macs", "device_param_bytes", "device_peak_bytes"} <= set(cut)
    assert len(data["cuts"]) == 70 and data["unknown_ops"] == []


def test_tables_and_csv(sample_path, tmp_path):
    out = tmp_path / "nodes.csv"
    proc = run_cli("analyze", str(sample_path("lenet5")), "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Totals" in proc.stdout and "61,706 params" in proc.stdout and "Cut candidates" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and rows[0]["op_type"] == "Conv" and int(rows[0]["macs"]) == 6 * 28 * 28 * 25


def test_real_model_with_bare_shape():
    proc = run_cli("analyze", str(rapidocr_model(CLS_MODEL)), "--input-shape", "1x3x48x192", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["outputs"][0]["shape"] == [1, 2]
    assert data["totals"]["macs"] > 0 and len(data["cuts"]) > 200


def _assert_clean_failure(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("splitnn: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_file(tmp_path):
    _assert_clean_failure(run_cli("analyze", str(tmp_path / "nope.onnx")), "does not exist")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a model\n")
    _assert_clean_failure(run_cli("analyze", str(path)), "not", "ONNX")


def test_truncated(sample_path, tmp_path):
    data = sample_path("lenet5").read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    _assert_clean_failure(run_cli("analyze", str(path)), "truncated")


def test_missing_external_data(sample_path, tmp_path):
    source = sample_path("lenet5", None, external=True)
    (tmp_path / "lenet5.onnx").write_bytes(source.read_bytes())
    _assert_clean_failure(run_cli("analyze", str(tmp_path / "lenet5.onnx")), "lenet5.data", "missing")


def test_open_dimension_without_shape():
    _assert_clean_failure(run_cli("analyze", str(rapidocr_model(CLS_MODEL))), "open shape", "x:1x3x224x224")


@pytest.mark.parametrize("spec", ["x:1x3xq", "x:1,3,-4", "x:"])
def test_unparseable_shape(spec):
    _assert_clean_failure(run_cli("analyze", str(rapidocr_model(CLS_MODEL)), "--input-shape", spec), "input shape")


def test_bad_option_is_one_line(sample_path):
    _assert_clean_failure(run_cli("analyze", str(sample_path("lenet5")), "--cuts", "many"), "--cuts", "--help")


def test_control_flow_model_warns_and_works(tmp_path):
    then_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [tensor("t", [3])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [tensor("e", [3])])
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["cond"], to=onnx.TensorProto.BOOL),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_graph, else_branch=else_graph),
    ]
    path = tmp_path / "if.onnx"
    onnx.save_model(make_model(nodes, [tensor("x", [3])], [tensor("y", [3])]), str(path))
    proc = run_cli("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "If" in proc.stderr and "opaque" in proc.stderr
    assert json.loads(proc.stdout)["unknown_ops"][0]["op_type"] == "If"


def test_help_has_examples():
    proc = run_cli("analyze", "--help")
    assert proc.returncode == 0 and "Examples:" in proc.stdout and "--input-shape" in proc.stdout

from __future__ import annotations

import json

import onnx

from tests.helpers import run_cli


def test_list_and_build(tmp_path):
    proc = run_cli("samples", "list", "--json")
    assert proc.returncode == 0
    names = {s["name"] for s in json.loads(proc.stdout)}
    assert {"lenet5", "alexnet", "vgg16", "vgg19", "resnet18", "mobilenet"} == names
    out = tmp_path / "sub" / "m.onnx"
    proc = run_cli("samples", "build", "mobilenet", "-o", str(out), "--input-size", "64", "--external-data")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sub" / "m.data").stat().st_size > 16_000_000
    assert out.stat().st_size < 100_000  # graph only
    onnx.checker.check_model(str(out))
    assert [p.name for p in (tmp_path / "sub").iterdir() if p.name.startswith(".")] == []  # no staging left


def test_unknown_sample_is_one_line(tmp_path):
    proc = run_cli("samples", "build", "resnet50", "-o", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown sample" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()

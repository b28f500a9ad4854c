from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from splitnn.onnxsplit.vertical.weights_update import update_weights
from tests.helpers import run_cli, session


def _retrained(source, target, names, scale=1.5):
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if tensor.name in names:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(scale), tensor.name))
    onnx.save_model(model, str(target))
    return target


@pytest.fixture()
def split(sample_path, tmp_path):
    path = sample_path("lenet5")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=("averagepool2_out",))
    write_split(analysis, plan, tmp_path / "plan")
    return path, analysis, tmp_path / "plan"


def test_only_server_layers_changed_means_zero_device_bytes(split, tmp_path):
    path, analysis, outdir = split
    device_blob = (outdir / "device" / "weights.bin").read_bytes()
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"fc3.weight"})
    report = update_weights(outdir, retrained).to_dict()
    assert report["device_download_bytes"] == 0
    assert report["parts"]["device"]["changed"] == []
    assert report["parts"]["server"]["changed"] == ["fc3.weight"]
    assert report["parts"]["server"]["changed_bytes"] == 10 * 84 * 4
    assert (outdir / "device" / "weights.bin").read_bytes() == device_blob  # untouched
    # The updated split now computes the retrained model.
    feeds = random_inputs(analysis.graph)
    hidden = session(str(outdir / "device" / "model.onnx")).run(["averagepool2_out"], feeds)[0]
    chained = session(str(outdir / "server" / "model.onnx")).run(None, {"averagepool2_out": hidden})[0]
    np.testing.assert_allclose(chained, session(str(retrained)).run(None, feeds)[0], rtol=1e-5, atol=1e-6)
    assert json.loads((outdir / "plan.json").read_text())["weights_update"]["device_download_bytes"] == 0


def test_device_layer_change_is_counted_and_ort_rebuilt(split, tmp_path):
    path, analysis, outdir = split
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"conv1.weight", "fc1.bias"})
    report = update_weights(outdir, retrained).to_dict()
    assert report["device_download_bytes"] == 6 * 1 * 5 * 5 * 4
    assert report["parts"]["server"]["changed"] == ["fc1.bias"]
    feeds = random_inputs(analysis.graph)
    want = session(str(retrained)).run(None, feeds)[0]
    hidden = session(str(outdir / "device" / "model.ort")).run(["averagepool2_out"], feeds)[0]
    np.testing.assert_allclose(session(str(outdir / "server" / "model.onnx")).run(None, {"averagepool2_out": hidden})[0],
                               want, rtol=1e-5, atol=1e-5)


def test_a_different_graph_is_refused(split, sample_path):
    _, _, outdir = split
    with pytest.raises(SplitnnError, match="not have the same graph"):
        update_weights(outdir, sample_path("lenet5", 36))  # other input size: other classifier shape
    proc = run_cli("update-weights", str(outdir), "--from", str(sample_path("lenet5", 36)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "same graph" in proc.stderr


def test_cli_report(split, tmp_path):
    path, _, outdir = split
    retrained = _retrained(path, tmp_path / "r.onnx", {"fc3.bias"})
    proc = run_cli("update-weights", str(outdir), "--from", str(retrained), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parts"]["server"]["changed_bytes"] == 40

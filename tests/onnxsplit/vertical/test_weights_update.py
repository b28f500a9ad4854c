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


def test_device_layer_change_travels_alone_and_the_ort_takes_it_from_the_blob(split, tmp_path):
    """Only the changed tensor travels: the .ort is kept and takes its weights from the new blob at load."""
    from splitnn.onnxsplit.runtime.device import DevicePart

    path, analysis, outdir = split
    ort_before = (outdir / "device" / "model.ort").read_bytes()
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"conv1.weight", "fc1.bias"})
    report = update_weights(outdir, retrained).to_dict()
    assert report["device_download_bytes"] == 6 * 1 * 5 * 5 * 4 and report["ort_rebuilt"] is False
    assert (outdir / "device" / "model.ort").read_bytes() == ort_before  # nothing else for the device to fetch
    assert report["parts"]["server"]["changed"] == ["fc1.bias"]
    feeds = random_inputs(analysis.graph)
    want = session(str(retrained)).run(None, feeds)[0]
    part = DevicePart(outdir)
    assert part.file.suffix == ".ort" and part.plan.device_ort_weights_from_blob
    hidden = part.run(feeds)["averagepool2_out"]
    np.testing.assert_allclose(session(str(outdir / "server" / "model.onnx")).run(None, {"averagepool2_out": hidden})[0],
                               want, rtol=1e-5, atol=1e-5)
    stale = session(str(outdir / "device" / "model.ort")).run(["averagepool2_out"], feeds)[0]
    assert not np.allclose(stale, hidden)  # the .ort alone still holds the old weights: the blob is what counts


def test_a_weight_the_ort_folded_away_rebuilds_it(sample_path, tmp_path):
    """onnxruntime fuses Conv and BatchNormalization into new weights when it writes the .ort: a new BN scale
    cannot be given at load, so the .ort is rebuilt, and counted in the download."""
    from splitnn.onnxsplit.runtime.device import DevicePart

    path = sample_path("resnet18", 64)
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=("maxpool1_out",))
    write_split(analysis, plan, tmp_path / "plan")
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"bn1.weight"})
    report = update_weights(tmp_path / "plan", retrained).to_dict()
    ort_bytes = (tmp_path / "plan" / "device" / "model.ort").stat().st_size
    assert report["ort_rebuilt"] is True and report["device_download_bytes"] == 64 * 4 + ort_bytes
    part = DevicePart(tmp_path / "plan")
    assert not part.plan.device_ort_weights_from_blob
    feeds = random_inputs(analysis.graph)
    hidden = part.run(feeds)["maxpool1_out"]
    chained = session(str(tmp_path / "plan" / "server" / "model.onnx")).run(None, {"maxpool1_out": hidden})[0]
    np.testing.assert_allclose(chained, session(str(retrained)).run(None, feeds)[0], rtol=1e-4, atol=1e-4)


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


def test_after_an_update_run_bench_runs_the_new_weights_and_compares_with_the_new_model(split, tmp_path):
    path, _, outdir = split
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"conv1.weight", "fc3.weight"}, scale=3.0)
    proc = run_cli("update-weights", str(outdir), "--from", str(retrained))
    assert proc.returncode == 0, proc.stderr
    assert "the .ort is kept" in proc.stdout
    proc = run_cli("run-bench", str(outdir), "--requests", "2", "--no-baselines", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["outputs_match"] is True and report["max_abs_err"] < 1e-4


def test_a_tile_plan_is_refused_with_one_line(sample_path, tmp_path):
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(tmp_path / "tiles"), "--strategy", "tiles")
    assert proc.returncode == 0, proc.stderr
    plan_before = (tmp_path / "tiles" / "plan.json").read_bytes()
    proc = run_cli("update-weights", str(tmp_path / "tiles"), "--from", str(sample_path("lenet5")))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "partition the retrained model again" in proc.stderr
    assert (tmp_path / "tiles" / "plan.json").read_bytes() == plan_before  # nothing changed

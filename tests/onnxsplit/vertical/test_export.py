"""The written parts: load in onnxruntime (the .ort too), chain back, weights in one blob each."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import CLS_MODEL, rapidocr_model, session


def _chain(outdir, document, feeds):
    results = {}
    for side, ext in (("device", "ort"), ("server", "onnx")):
        part = document["parts"][side]
        if part["empty"]:
            continue
        pool = {**feeds, **results}
        values = session(str(outdir / side / f"model.{ext}")).run(part["outputs"], {n: pool[n] for n in part["inputs"]})
        results.update(zip(part["outputs"], values))
    return results


def _split(path, outdir, shapes=None, tensors=None, **kwargs):
    analysis = analyze(load_graph(path, shapes))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=tensors)
    return analysis, write_split(analysis, plan, outdir, **kwargs).to_dict()  # plan.json's documented keys


def test_multi_tensor_cut_of_resnet(sample_path, tmp_path):
    path = sample_path("resnet18", 64)
    analysis = analyze(load_graph(path))
    inside_block = next(c for c in analysis.cuts if len(c.tensors) == 2 and 20 < c.id < 40)
    outdir = tmp_path / "plan"
    _, document = _split(path, outdir, tensors=inside_block.tensors)
    assert document["cut"]["tensors"] == list(inside_block.tensors)
    assert document["verification"]["passed"] and document["verification"]["max_abs_err"] < 1e-4
    for side in ("device", "server"):
        graph_file, blob = outdir / side / "model.onnx", outdir / side / "weights.bin"
        assert graph_file.stat().st_size < 0.01 * blob.stat().st_size  # the graph is small, the blob holds the weights
        model = onnx.load(str(graph_file), load_external_data=False)
        locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
        assert locations == {"weights.bin"}
    assert (outdir / "device" / "model.ort").stat().st_size > 0
    blobs = (outdir / "device" / "weights.bin").stat().st_size + (outdir / "server" / "weights.bin").stat().st_size
    assert blobs == analysis.totals.param_bytes  # every weight in exactly one blob (no sharing across the cut here)
    feeds = random_inputs(analysis.graph)
    reference = session(str(path)).run(None, feeds)[0]
    chained = _chain(outdir, document, feeds)[analysis.graph.outputs[0]]
    assert np.max(np.abs(chained - reference)) < 1e-4
    assert set(document["artifacts"].values()) == {
        "device/model.onnx", "device/weights.bin", "device/model.ort", "server/model.onnx", "server/weights.bin"}


def test_real_exported_model_weights_leave_constant_nodes(tmp_path):
    path = rapidocr_model(CLS_MODEL)
    shapes = {"x": (1, 3, 48, 192)}
    analysis = analyze(load_graph(path, shapes))
    middle = analysis.cuts[len(analysis.cuts) // 2]
    outdir = tmp_path / "cls"
    _, document = _split(path, outdir, shapes, middle.tensors)
    assert document["verification"]["passed"]
    blobs = {side: (outdir / side / "weights.bin").stat().st_size for side in ("device", "server")}
    graphs = {side: (outdir / side / "model.onnx").stat().st_size for side in ("device", "server")}
    assert all(size > 10_000 for size in blobs.values())
    # The model kept its weights in Constant nodes; now nearly all of them live in the blobs
    # (values under 64 bytes stay in the graph) and the graph files are far smaller.
    assert sum(blobs.values()) >= 0.9 * analysis.totals.param_bytes
    assert sum(graphs.values()) < 0.2 * sum(blobs.values())
    feeds = random_inputs(analysis.graph)
    reference = session(str(path)).run(None, feeds)[0]
    assert np.max(np.abs(_chain(outdir, document, feeds)[analysis.graph.outputs[0]] - reference)) < 1e-5


def test_all_device_and_all_server_outcomes(sample_path, tmp_path):
    path = sample_path("lenet5")
    _, server_only = _split(path, tmp_path / "server_only", tensors=("input",))
    assert server_only["parts"]["device"]["empty"] and not (tmp_path / "server_only" / "device").exists()
    _, device_only = _split(path, tmp_path / "device_only", tensors=())
    assert device_only["parts"]["server"]["empty"] and (tmp_path / "device_only" / "device" / "model.ort").exists()
    assert device_only["verification"]["passed"] and server_only["verification"]["passed"]


def test_failed_verification_writes_nothing(sample_path, tmp_path):
    """Cutting between conv1 and its batch norm stops onnxruntime from fusing them, so the
    chained parts differ from the whole model in the last bits (about 2e-5): zero tolerance fails."""
    outdir = tmp_path / "strict"
    with pytest.raises(SplitnnError, match=r"verification failed: .* by up to [1-9]"):
        _split(sample_path("resnet18", 64), outdir, tensors=("conv1_out",), atol=0.0, rtol=0.0, ort_format=False)
    assert not outdir.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_refuses_a_foreign_folder_and_replaces_an_old_plan(sample_path, tmp_path):
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(SplitnnError, match="not a splitnn output folder"):
        _split(sample_path("lenet5"), foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    outdir = tmp_path / "plan"
    _split(sample_path("lenet5"), outdir, tensors=("input",))
    _split(sample_path("lenet5"), outdir, tensors=())
    assert json.loads((outdir / "plan.json").read_text())["parts"]["server"]["empty"]
    assert not (outdir / "server").exists()  # the old plan's parts are gone


def test_external_data_source_streams_into_blobs(sample_path, tmp_path):
    path = sample_path("resnet18", 64, external=True)
    analysis = analyze(load_graph(path))
    middle = next(c for c in analysis.cuts if len(c.tensors) == 1 and 30 < c.id < 50)
    outdir = tmp_path / "ext"
    _, document = _split(path, outdir, tensors=middle.tensors)
    assert document["verification"]["passed"] and document["verification"]["max_abs_err"] < 1e-4
    blobs = sum((outdir / side / "weights.bin").stat().st_size for side in ("device", "server"))
    assert blobs == analysis.totals.param_bytes


def _model_over_2gb(folder):
    """An embedding table of 2 GiB + 4 MiB in a sparse external file (zeros, no disk blocks), then Relu and Mul."""
    rows = 2**31 // (16 * 4) + 2**16
    table = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[rows, 16], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.bin"), ("offset", "0"), ("length", str(rows * 16 * 4))):
        entry = table.external_data.add()
        entry.key, entry.value = key, value
    with open(folder / "big.bin", "wb") as handle:
        handle.truncate(rows * 16 * 4)
    scale = numpy_helper.from_array(np.full(16, 2.0, np.float32), "scale")
    nodes = [helper.make_node("Gather", ["table", "idx"], ["emb"]), helper.make_node("Relu", ["emb"], ["r"]),
             helper.make_node("Mul", ["r", "scale"], ["y"])]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])], [table, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(folder / "big.onnx"))
    return folder / "big.onnx", rows * 16 * 4


def test_model_over_2gb(tmp_path):
    path, table_bytes = _model_over_2gb(tmp_path)
    # The ORT format cannot hold it: refused before anything is written.
    with pytest.raises(SplitnnError, match="cannot exceed 2 GiB: add --no-ort"):
        _split(path, tmp_path / "out", tensors=("emb",))
    assert not (tmp_path / "out").exists()
    try:
        analysis, document = _split(path, tmp_path / "out", tensors=("emb",), ort_format=False)
        assert document["verification"]["passed"] and document["verification"]["device_artifact"] == "device/model.onnx"
        assert (tmp_path / "out" / "device" / "weights.bin").stat().st_size == table_bytes
        assert (tmp_path / "out" / "device" / "model.onnx").stat().st_size < 10_000
        assert analysis.totals.param_bytes == table_bytes + 64
    finally:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)  # 2 GiB of real blocks; pytest keeps old tmp dirs

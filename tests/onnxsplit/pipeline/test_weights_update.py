"""update-weights on a pipeline plan (issue 33, item 4): only the stages whose weights changed change, each
machine is told what it must download, and the stages chained give the retrained model's outputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import splitnn
from splitnn.onnxsplit.artifacts.pipeline_records import PipelineWeightsUpdateRecord
from splitnn.onnxsplit.artifacts.plan_file import load_verification_data, read_pipeline_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from tests.helpers import session
from tests.onnxsplit.pipeline.test_export import _run_stages
from tests.onnxsplit.pipeline.test_planning import machines_file


def _retrained(model_path, names, path):
    """The model with the weights `names` scaled by 1.5 (a retraining that touched only them)."""
    model = onnx.load(str(model_path))
    for tensor in model.graph.initializer:
        if tensor.name in names:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.5), tensor.name))
    onnx.save(model, str(path))
    return path


def test_only_the_changed_stage_is_rewritten_and_the_chain_gives_the_retrained_outputs(sample_path, tmp_path):
    machines_file(tmp_path, [("a", "rockpro64", 'memory = "60MB"\nsource = true'), ("b", "rockpro64", 'memory = "60MB"'),
                             ("c", "cloud-cpu", "")], [("a", "b", "wifi"), ("b", "c", "wifi"), ("a", "c", "4g")])
    model = sample_path("alexnet", 64)
    plan = splitnn.partition(model, tmp_path / "p", machines=tmp_path / "machines.toml", objective="throughput")
    working = [f for f in plan.files if f.model is not None]
    assert len(working) >= 2
    first = working[0]
    first_weights = [t.name for t in onnx.load(str(tmp_path / "p" / first.model)).graph.initializer
                     if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 1][:1]
    before = {f.machine: (tmp_path / "p" / f.weights).read_bytes() for f in working}
    retrained = _retrained(model, set(first_weights), tmp_path / "retrained.onnx")

    report = splitnn.update_weights(tmp_path / "p", retrained)
    assert isinstance(report, PipelineWeightsUpdateRecord)
    by_machine = {s.machine: s for s in report.stages}
    assert by_machine[first.machine].changed == tuple(first_weights)
    assert all(not s.changed and s.download_bytes == 0 for m, s in by_machine.items() if m != first.machine)
    for f in working:  # only the changed stage's blob was rewritten
        assert ((tmp_path / "p" / f.weights).read_bytes() == before[f.machine]) == (f.machine != first.machine)
    # A board's stage runs its .ort, which holds its weights: rebuilt, and it is what travels; else the tensors.
    changed = by_machine[first.machine]
    if first.ort is not None:
        assert changed.ort_rebuilt and changed.download_bytes == (tmp_path / "p" / first.ort).stat().st_size
    else:
        assert changed.ort_rebuilt is None and changed.download_bytes == changed.changed_bytes
    # The stages as each machine runs them give the retrained model's outputs, which are now the kept reference.
    kept = load_verification_data(tmp_path / "p")
    assert kept is not None
    feeds, reference = kept
    expected = dict(zip(plan.outputs, session(str(retrained)).run(list(plan.outputs), feeds)))
    chained = _run_stages(tmp_path / "p", read_pipeline_plan(tmp_path / "p"), feeds)
    for name in plan.outputs:
        np.testing.assert_allclose(chained[name], expected[name], atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(reference[name], expected[name], atol=1e-5, rtol=1e-5)  # the kept reference
    assert read_pipeline_plan(tmp_path / "p").weights_update == report
    # A model with another graph is refused in one line, and nothing is touched.
    with pytest.raises(SplitnnError, match="does not have the same graph"):
        splitnn.update_weights(tmp_path / "p", sample_path("lenet5"))

"""The Python API (issue 32, item 1): `import splitnn` and the main jobs as typed functions, without the CLI."""
from __future__ import annotations

import subprocess
import sys

import pytest

import splitnn
from splitnn.onnxsplit.artifacts.plan_file import TilePlanFile, VerticalPlanFile


def test_import_splitnn_is_light_and_gives_the_api_on_first_use():
    """`import splitnn` loads neither onnx nor numpy (the command line lives under it and must start fast); each
    name of splitnn.__all__ is there on first use, and an unknown one is an AttributeError."""
    probe = "import sys, splitnn; print('onnx' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split() == [
        "False", "False"]
    assert all(callable(getattr(splitnn, name)) for name in splitnn.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        splitnn.nothing  # noqa: B018


def test_partition_in_tiles_and_its_bench_on_dask(sample_path, tmp_path):
    model = sample_path("vgg16", 64)
    plan = splitnn.partition(model, tmp_path / "tiles", strategy="tiles", nodes=2, grid=(1, 2), stacks=1)
    assert isinstance(plan, TilePlanFile) and plan.verification.passed and (plan.grid.rows, plan.grid.cols) == (1, 2)
    assert plan.predicted.cluster_link_bps == 1e9
    report = splitnn.run_bench(tmp_path / "tiles", images=1)
    assert report.outputs_match is True


def test_bad_input_raises_the_clis_one_line_errors(tmp_path):
    with pytest.raises(splitnn.SplitnnError, match="model file '.*nothing.onnx' does not exist"):
        splitnn.analyze(tmp_path / "nothing.onnx")
    with pytest.raises(splitnn.SplitnnError, match="unknown device profile 'nano'"):
        splitnn.load_profile("nano")
    with pytest.raises(splitnn.SplitnnError, match="bad bandwidth 'fast'"):
        splitnn.load_link("4g", bandwidth="fast")
    assert splitnn.load_link("4g", bandwidth="20Mbit", rtt="30ms").uplink_bps == 20e6
    with pytest.raises(splitnn.SplitnnError, match="unknown strategy 'diagonal'"):
        splitnn.partition(tmp_path / "m.onnx", tmp_path / "out", strategy="diagonal")


def test_asking_for_an_adaptive_plan_names_the_kind_found(sample_path, tmp_path):
    """read_plan(folder, "adaptive") on a vertical split: one line naming what the folder holds (it was a
    KeyError)."""
    from splitnn.onnxsplit.artifacts.plan_file import read_plan

    splitnn.partition(sample_path("alexnet", 64), tmp_path / "v", ort_format=False)
    with pytest.raises(splitnn.SplitnnError, match="holds a vertical plan, not an adaptive one"):
        read_plan(tmp_path / "v", "adaptive")


def test_update_weights_and_the_node_table(sample_path, tmp_path):
    """update_weights moves a retrained model's weights into a split and says what the device downloads; the
    node table has one row per node, with the MACs analyze counted."""
    import csv

    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = sample_path("alexnet", 64)
    plan = splitnn.partition(model, tmp_path / "split", cut="relu1_out", ort_format=False)
    retrained = onnx.load(str(model))
    server_weight = next(t for t in retrained.graph.initializer if t.name.startswith("fc"))
    server_weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(server_weight) * np.float32(1.5),
                                                   server_weight.name))
    onnx.save(retrained, str(tmp_path / "retrained.onnx"))
    report = splitnn.update_weights(tmp_path / "split", tmp_path / "retrained.onnx")
    assert report.device_download_bytes == 0 and report.parts["server"].changed == (server_weight.name,)
    assert plan.cut.tensors == ("relu1_out",)
    analysis = splitnn.analyze(model)
    splitnn.write_node_csv(analysis, tmp_path / "nodes.csv")
    rows = list(csv.DictReader((tmp_path / "nodes.csv").open()))
    assert len(rows) == len(analysis.graph.nodes)
    assert sum(int(row["macs"]) for row in rows) == analysis.totals.macs


def test_the_api_checks_what_the_command_line_checks(sample_path, tmp_path):
    model = sample_path("lenet5")
    with pytest.raises(splitnn.SplitnnError, match="--grid 0x2 must have at least one row"):
        splitnn.partition(model, tmp_path / "t", strategy="tiles", grid=(0, 2))
    analysis = splitnn.analyze(model)
    name = analysis.graph.inputs[0]
    dims = "x".join(str(d) for d in analysis.graph.info(name).shape)
    assert splitnn.analyze(model, f"{name}:{dims}").totals.macs == analysis.totals.macs  # one spec, as a string


def test_serve_and_device_in_this_process(sample_path, tmp_path):
    """splitnn.serve starts the server part on a thread, splitnn.device runs the device part and sends the cut:
    the answer equals the unsplit model's on the plan's verification input; a wrong token is refused."""
    import numpy as np

    from splitnn.onnxsplit.artifacts.plan_file import load_verification_data

    model = sample_path("alexnet", 64)
    splitnn.partition(model, tmp_path / "split", cut="relu2_out", ort_format=False)
    feeds, reference = load_verification_data(tmp_path / "split")
    with splitnn.serve(tmp_path / "split", token=b"secret") as server:
        client = splitnn.device(tmp_path / "split", server.address, token=b"secret", name="test-board")
        result = client.request(feeds)
        client.close()
        assert result.ok and result.bytes_up > 0
        for name, expected in reference.items():
            np.testing.assert_allclose(result.outputs[name], expected, rtol=1e-4, atol=1e-5)
        stranger = splitnn.device(tmp_path / "split", f"{server.address[0]}:{server.address[1]}", token=b"wrong")
        with pytest.raises(splitnn.SplitnnError):
            stranger.request(feeds)
        stranger.close()
    with pytest.raises(splitnn.SplitnnError, match="server address 'nowhere' must be HOST:PORT"):
        splitnn.device(tmp_path / "split", "nowhere")


def test_partition_takes_every_option_the_command_line_has(sample_path, tmp_path):
    """issue 32, items 1-2: codecs, adaptive plans over a range of rates and tile reuse through the API, run by the
    same job as `splitnn partition` (jobs/partition.py), without a subprocess."""
    from splitnn.onnxsplit.artifacts.plan_file import AdaptivePlanFile

    model = sample_path("alexnet", 96)
    coded = splitnn.partition(model, tmp_path / "coded", link="3g", cut="maxpool2_out", codec="int8+lossless")
    assert isinstance(coded, VerticalPlanFile) and coded.codec is not None and coded.codec.name == "int8+lossless"
    assert coded.cut.tensors == ("maxpool2_out",) and coded.verification.passed
    adaptive = splitnn.partition(model, tmp_path / "adaptive", adaptive=True, bandwidth_range="0.1Mbit-50Mbit")
    assert isinstance(adaptive, AdaptivePlanFile) and adaptive.kept
    assert (adaptive.low_bps, adaptive.high_bps) == (0.1e6, 50e6)
    measured = splitnn.run_bench(tmp_path / "adaptive", requests=3, bandwidth="20Mbit")  # run-bench's adaptive job
    assert measured.requests == 3 and measured.answered_remote + measured.answered_local == 3
    assert measured.outputs_match is True
    assert splitnn.load_plan(tmp_path / "adaptive") == adaptive
    tiles = splitnn.partition(sample_path("vgg16", 64), tmp_path / "tiles", strategy="tiles", grid=(2, 2), stacks=1,
                              fuse_until="maxpool2_out", reuse=True)
    assert isinstance(tiles, TilePlanFile) and tiles.reuse_enabled and tiles.reuse.saved_macs > 0
    with pytest.raises(splitnn.SplitnnError, match="choose a vertical split's cut: drop them with strategy='tiles'"):
        splitnn.partition(model, tmp_path / "bad", strategy="tiles", adaptive=True)
    with pytest.raises(splitnn.SplitnnError, match="--deadline applies to a split over an emulated link"):
        splitnn.run_bench(tmp_path / "tiles", deadline="100ms")
    with pytest.raises(splitnn.SplitnnError, match="apply to tile plans"):
        splitnn.run_bench(tmp_path / "coded", workers=2)
    with pytest.raises(splitnn.SplitnnError, match="--deadline applies to adaptive plans"):
        splitnn.run_bench(tmp_path / "coded", deadline="100ms")
    with pytest.raises(splitnn.SplitnnError, match="--adaptive keeps the cuts best for latency over a range"):
        splitnn.partition(model, tmp_path / "bad", adaptive=True)
    assert not (tmp_path / "bad").exists()


def test_partition_gives_the_commands_notes_as_warnings_at_the_callers_line(sample_path, tmp_path):
    """What `splitnn partition` prints as a note comes to a Python caller as a UserWarning attributed to its own
    line (here: a codec that the chosen cut, all on the device, does not use)."""
    with pytest.warns(UserWarning, match="so --codec int8 is not used") as caught:
        plan = splitnn.partition(sample_path("alexnet", 96), tmp_path / "coded", link="cat1", codec="int8",
                                 max_device_share=1.0)
    assert plan.cut.tensors == () and plan.codec is None
    assert {record.filename for record in caught} == {__file__}

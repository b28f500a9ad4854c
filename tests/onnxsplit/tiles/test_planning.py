"""Several fused stacks in sequence (issue 16, item 1): chosen by predicted makespan, written, verified and run."""
from __future__ import annotations

import re

import pytest

import splitnn
from splitnn.cost_models.catalog import load_device
from splitnn.cost_models.latency import seconds
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.plan_file import read_tile_plan
from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.tiles.export import write_tiles
from splitnn.onnxsplit.tiles.planning import STITCH_ROUND_TRIP_S, plan_tiles
from tests.helpers import MTCNN_ONET, packaged_model

BOARD = load_device("rockpro64")


@pytest.fixture(scope="module")
def vgg(sample_path):
    return analyze(load_graph(sample_path("vgg16", 96)))


def test_auto_cuts_the_trunk_into_stacks_when_that_is_faster(vgg):
    """On a link where the tiles' bytes cost little (each stack moves its maps through the client)."""
    single = plan_tiles(vgg, 2, BOARD, stacks=1, cluster_link_bps=100e9)
    auto = plan_tiles(vgg, 2, BOARD, cluster_link_bps=100e9)
    assert len(auto.stacks) > 1 and auto.makespan_s < single.makespan_s
    # Each stack starts from the one before; they end at pooling layers; the phases add up with a round trip each.
    for before, after in zip(auto.stacks, auto.stacks[1:]):
        assert after.stack[0].input == before.stack[-1].output and before.stack[-1].op_type == "MaxPool"
    assert auto.tiles_phase_s == pytest.approx(sum(s.phase_s + s.transfer_s for s in auto.stacks)
                                               + STITCH_ROUND_TRIP_S * len(auto.stacks))
    # A node holds every stack's weights and the largest tile's activations.
    assert auto.node_memory_bytes == (sum(s.param_bytes for s in auto.stacks)
                                      + max(s.grid.max_tile_peak_bytes for s in auto.stacks))
    tiled = {layer.index for s in auto.stacks for layer in s.stack}
    assert tiled.isdisjoint(auto.remainder_indices)


def test_the_tiles_bytes_on_the_cluster_link_are_priced(vgg):
    """Each stack's crops out and outputs back cross the link between the client and the nodes: a 1x2 grid of
    VGG-16 at 96 to its first pool sends each tile its columns of the image and a halo, and gets its half of the
    64-channel map back; on a slower link the same plan is slower by exactly those bytes."""
    plan = plan_tiles(vgg, 2, BOARD, (1, 2), "maxpool1_out", stacks=1)
    phase = plan.stacks[0]
    crops = sum(3 * 4 * (t.input_region[1] - t.input_region[0]) * (t.input_region[3] - t.input_region[2])
                for t in phase.grid.tiles)
    assert crops == 2 * 3 * 4 * 96 * (48 + 2)  # 2 columns of halo for the two 3x3 convolutions
    assert phase.transfer_bytes == crops + 64 * 4 * 48 * 48
    assert phase.transfer_s == pytest.approx(phase.transfer_bytes * 8 / 1e9)
    slow = plan_tiles(vgg, 2, BOARD, (1, 2), "maxpool1_out", stacks=1, cluster_link_bps=100e6)
    assert slow.tiles_phase_s - plan.tiles_phase_s == pytest.approx(phase.transfer_bytes * 8 * (1 / 100e6 - 1 / 1e9))
    with pytest.raises(SplitnnError, match="--cluster-link must be a positive bandwidth"):
        plan_tiles(vgg, 2, BOARD, cluster_link_bps=0)


def test_a_forced_count_of_stacks_and_what_cannot_be(vgg):
    plan = plan_tiles(vgg, 2, BOARD, (1, 2), "maxpool4_out", stacks=2)
    assert len(plan.stacks) == 2 and plan.stacks[-1].stack[-1].output == "maxpool4_out"
    assert all((s.grid.rows, s.grid.cols) == (1, 2) for s in plan.stacks)
    with pytest.raises(SplitnnError, match="cannot be cut into 9 stacks: stacks end where the map shrinks"):
        plan_tiles(vgg, 2, BOARD, stacks=9)
    with pytest.raises(SplitnnError, match="--stacks must be at least 1"):
        plan_tiles(vgg, 2, BOARD, stacks=0)


def test_several_stacks_are_written_verified_and_run_on_dask(vgg, tmp_path):
    plan = plan_tiles(vgg, 2, BOARD, (2, 1), "maxpool5_out", stacks=3)
    document = write_tiles(vgg, plan, tmp_path / "tiles")  # verified against the model before it is published
    assert document.verification.passed and len(document.later_stacks) == 2
    assert [s.input for s in document.later_stacks] == [plan.stacks[0].stack[-1].output, plan.stacks[1].stack[-1].output]
    assert document.remainder.inputs[0] == "maxpool5_out" == read_tile_plan(tmp_path / "tiles").tiled_output
    # Every stack in one form, the first from the plan file's own fields.
    stacks = document.all_stacks
    assert [s.fuse_until for s in stacks] == [phase.stack[-1].output for phase in plan.stacks]
    assert stacks[0].input == document.image_input and stacks[1:] == document.later_stacks
    assert [s.param_bytes for s in stacks] == [phase.param_bytes for phase in plan.stacks]
    assert [s.predicted_phase_s for s in stacks] == pytest.approx([phase.total_s for phase in plan.stacks])
    assert all((tmp_path / "tiles" / name).is_file() for files in document.artifacts.later_stacks for name in files.tiles)
    report = run_tile_bench(tmp_path / "tiles", TileBenchOptions(images=1)).to_dict()
    assert report["outputs_match"] is True
    assert report["stack_labels"] == ["2x1 to " + plan.stacks[0].stack[-1].output,
                                      "2x1 to " + plan.stacks[1].stack[-1].output, "2x1 to maxpool5_out"]
    for row in report["scaling"]:  # each stack's phase, then what the client does after them
        assert len(row["stack_phases_s"]) == 3 and all(s > 0 for s in row["stack_phases_s"])
        assert row["tiles_phase_s"] == pytest.approx(sum(row["stack_phases_s"]), rel=1e-6)
        assert row["wall_s"] == pytest.approx(row["tiles_phase_s"] + row["remainder_s"], rel=1e-6)
    assert sorted((t["stack"], t["id"]) for t in report["tiles"]) == [(k, i) for k in range(3) for i in range(2)]
    # The other hand-off: each stack's tiles cut on the workers from the previous stack's outputs. The same outputs.
    report = run_tile_bench(tmp_path / "tiles", TileBenchOptions(images=1, scaling=False, handoff="workers")).to_dict()
    assert report["outputs_match"] is True and len(report["tiles"]) == 6


def test_a_worker_killed_mid_image_with_two_stacks(sample_path, tmp_path):
    """A worker killed while the first stack's tiles are out: its tasks are handed to the other worker by the
    scheduler (hand-off "client"), and with the hand-off between workers it may also hold first-stack outputs that
    the second stack needs, which the scheduler runs again; both times the image still comes out right."""
    analysis = analyze(load_graph(sample_path("vgg16", 96)))
    write_tiles(analysis, plan_tiles(analysis, 2, BOARD, (3, 3), "maxpool4_out", stacks=2), tmp_path / "t")
    for handoff in ("workers", "client"):
        options = TileBenchOptions(images=1, scaling=False, kill_worker_after_s=0, handoff=handoff)
        report = run_tile_bench(tmp_path / "t", options).to_dict()
        assert report["workers_killed"] == 1 and report["outputs_match"] is True
        assert report["retries"] >= 1 and len(report["tiles"]) == 18


def test_partition_plans_stacks_and_refuses_a_bad_count(sample_path, tmp_path):
    """The plan and the bench's report; what the command line prints of them: tests/cli/test_library_flows_cli.py."""
    from splitnn.onnxsplit.jobs.choices import tile_planning

    model = sample_path("vgg16", 64)
    plan = splitnn.partition(model, tmp_path / "t", strategy="tiles", stacks=2, grid=(1, 2))
    assert len(plan.all_stacks) == 2 and all((s.grid.rows, s.grid.cols) == (1, 2) for s in plan.all_stacks)
    report = splitnn.run_bench(tmp_path / "t", images=1).to_dict()
    assert report["outputs_match"] is True and report["stack_labels"][0].startswith("1x2 to ")
    assert all(len(row["stack_phases_s"]) == 2 for row in report["scaling"])
    for stacks in ("two", "0"):  # --stacks as the command line gives it
        with pytest.raises(SplitnnError, match=re.escape(f"--stacks '{stacks}' must be a whole number")):
            tile_planning(stacks=stacks)
    with pytest.raises(SplitnnError, match=re.escape("cannot be cut into 7 stacks")):
        splitnn.partition(model, tmp_path / "u", strategy="tiles", stacks=7)
    assert not (tmp_path / "u").exists()


def test_a_real_keras_export_runs_in_two_stacks(tmp_path):
    """MTCNN's O-Net (keras2onnx): the first stack reads the NHWC image through its layout transpose, the second
    is cropped from the first's stitched NCHW output."""
    package, relative, shapes = MTCNN_ONET
    plan = splitnn.partition(packaged_model(package, relative), tmp_path / "t", input_shapes=shapes, strategy="tiles",
                             stacks=2).to_dict()
    assert plan["verification"]["passed"] and plan["image_layout"] == "NHWC" and len(plan["later_stacks"]) == 1
    report = run_tile_bench(tmp_path / "t", TileBenchOptions(images=1, scaling=False)).to_dict()
    assert report["outputs_match"] is True and len(report["scaling"][0]["stack_phases_s"]) == 2


def test_fully_connected_layers_are_split_where_that_is_predicted_faster(sample_path, tmp_path):
    """Issue 16, item 2: a fully connected layer that fits a node is still split by output neurons when one slice
    per node at once, plus a round trip, is predicted faster than the whole layer on the client."""
    import dataclasses

    analysis = analyze(load_graph(sample_path("vgg16", 64)))
    slow_memory = dataclasses.replace(BOARD, name="slow", weight_bytes_per_s=1e8)  # fc1: 8.4 MB at 0.1 GB/s, 84 ms
    timed = plan_tiles(analysis, 2, slow_memory, (1, 2), "maxpool3_out", stacks=1)
    split = {s.name: s for s in timed.neuron_splits}
    assert split and all(s.why == "time" and len(s.ranges) == 2 for s in split.values())
    untouched = plan_tiles(analysis, 2, slow_memory, (1, 2), "maxpool3_out", stacks=1, fc_split="memory")
    assert not untouched.neuron_splits and timed.remainder_s < untouched.remainder_s
    # Each split layer: half its time on each node, and one round trip.
    saved = sum(seconds(analysis.graph, analysis.nodes, [s.index], slow_memory) / 2 - STITCH_ROUND_TRIP_S
                for s in split.values())
    assert untouched.remainder_s - timed.remainder_s == pytest.approx(saved)
    document = write_tiles(analysis, timed, tmp_path / "t")  # slices written and the whole verified
    assert document.verification.passed and {s.why for s in document.neuron_splits} == {"time"}
    report = run_tile_bench(tmp_path / "t", TileBenchOptions(images=1, scaling=False)).to_dict()
    (row,) = report["scaling"]  # each split layer timed on its own, within what follows the tiles
    assert report["outputs_match"] is True and len(row["split_layers_s"]) == len(split)
    assert 0 < sum(row["split_layers_s"]) < row["remainder_s"]
    with pytest.raises(SplitnnError, match="--fc-split 'never' must be one of time, memory"):
        plan_tiles(analysis, 2, BOARD, fc_split="never")


def test_reuse_applies_within_each_stack(vgg, tmp_path):
    """Issue 16, item 4: with --reuse every stack runs its checkerboard's two phases, the second cropped from the
    stitched output of the stack before."""
    plan = plan_tiles(vgg, 2, BOARD, (3, 3), "maxpool3_out", stacks=2)
    document = write_tiles(vgg, plan, tmp_path / "t", reuse=True)  # verified: stitched through both stacks' phases
    assert document.verification.passed and document.reuse.saved_macs > 0
    (later,) = document.later_stacks
    assert later.reuse.enabled and later.reuse.saved_macs > 0 and document.artifacts.later_stacks[0].reuse
    report = run_tile_bench(tmp_path / "t", TileBenchOptions(images=1, scaling=False)).to_dict()
    assert report["outputs_match"] is True and len(report["tiles"]) == 18
    with pytest.raises(SplitnnError, match="--handoff workers does not run a reuse plan's stacks"):
        run_tile_bench(tmp_path / "t", TileBenchOptions(images=1, scaling=False, handoff="workers"))

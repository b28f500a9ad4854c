"""Tile plans on Dask distributed: an embedded local cluster runs the tiles, the client stitches; faults are survived."""
from __future__ import annotations

import re
import time

import pytest

import splitnn
from splitnn.cost_models.catalog import load_device
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench
from splitnn.onnxsplit.artifacts.plan_file import read_tile_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.tiles.dask_runtime import TileProgram
from splitnn.onnxsplit.tiles.export import write_tiles
from splitnn.onnxsplit.tiles.planning import plan_tiles


@pytest.fixture(scope="module")
def vgg_tiles(sample_path, tmp_path_factory):
    analysis = analyze(load_graph(sample_path("vgg16", 96)))
    outdir = tmp_path_factory.mktemp("tiles") / "vgg"
    write_tiles(analysis, plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "maxpool2_out", stacks=1), outdir)
    return outdir


def test_tiles_run_on_two_workers_and_match(vgg_tiles):
    report = run_tile_bench(vgg_tiles, TileBenchOptions(images=2)).to_dict()
    assert report["mode"] == "tiles" and report["workers"] == 2 and report["outputs_match"] is True
    assert report["max_abs_err"] < 1e-4
    assert [row["workers"] for row in report["scaling"]] == [1, 2]
    assert all(row["wall_s"] > 0 and row["tiles_phase_s"] <= row["wall_s"] for row in report["scaling"])
    assert all(row["client_cpu_s"] > 0 for row in report["scaling"])  # crops, stitching, remainder, the scheduler
    assert sorted(tile["id"] for tile in report["tiles"]) == [0, 1, 2, 3]
    assert all(tile["seconds"] > 0 and tile["worker"].startswith("tcp://") for tile in report["tiles"])
    assert report["retries"] == 0 and report["workers_killed"] == 0


def test_data_parallel_spreads_whole_images(vgg_tiles):
    report = run_tile_bench(vgg_tiles, TileBenchOptions(images=4, data_parallel=True)).to_dict()
    assert report["mode"] == "data-parallel" and report["outputs_match"] is True
    assert [row["workers"] for row in report["scaling"]] == [1, 2] and len(report["tiles"]) == 4
    assert all(row["images_per_s"] > 0 for row in report["scaling"])
    # The seed's table: time by image count (a quarter, half, all) and worker count.
    assert [(row["images"], row["workers"]) for row in report["table"]] == [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2)]


def test_the_bench_report_of_a_tile_plan_on_emulated_nodes(vgg_tiles):
    """What run-bench --emulate-nodes --json prints of a tile plan (its tables: tests/cli/test_library_flows_cli.py):
    every tile takes at least what the plan predicts on its node profile (the host is faster than a rockpro64, so
    the hold decides), the remainder (its fc layers split across the nodes included) at least its prediction;
    the outputs are the model's."""
    result = run_tile_bench(vgg_tiles, TileBenchOptions(images=1, scaling=False, emulate_nodes=True))
    report = result.to_dict()
    assert {"outputs_match", "max_abs_err", "workers", "makespan_s", "scaling", "tiles"} <= set(report)
    assert report["outputs_match"] is True and [row["workers"] for row in report["scaling"]] == [2]
    assert result.emulated_nodes == "rockpro64" and result.plan_nodes == 2
    plan = read_tile_plan(vgg_tiles)
    assert plan.predicted is not None
    predicted = {tile.id: tile.predicted_s for tile in plan.tiles}
    assert sorted(run.id for run in result.tiles) == sorted(predicted)
    assert all(run.seconds >= predicted[run.id] for run in result.tiles)
    assert (result.scaling[0].remainder_s or 0) >= plan.predicted.remainder_s


def test_emulated_nodes_refuse_what_the_plan_predicts_no_time_for(sample_path, tmp_path):
    analysis = analyze(load_graph(sample_path("vgg16", 96)))
    plan = plan_tiles(analysis, 2, load_device("rockpro64"), (2, 2), "maxpool2_out", stacks=1)
    write_tiles(analysis, plan, tmp_path / "reuse", reuse=True)
    with pytest.raises(SplitnnError, match=re.escape("--emulate-nodes does not run a reuse plan")):
        TileProgram(tmp_path / "reuse", emulate_nodes=True)


def test_hold_until_waits_out_the_target():
    start = time.perf_counter()
    assert hold_until(start, 0.02) >= 0.02
    start = time.perf_counter()
    assert hold_until(start, None) < 0.02  # no target: no wait


def test_vertical_plans_refuse_tile_options(sample_path, tmp_path):
    splitnn.partition(sample_path("lenet5"), tmp_path / "lenet", cut="averagepool2_out")  # as conftest's lenet_plan
    with pytest.raises(SplitnnError, match=re.escape("workers, scheduler, data_parallel and emulate_nodes apply to "
                                                     "tile plans")):
        splitnn.run_bench(tmp_path / "lenet", workers=2)


def test_unreachable_scheduler_is_a_clear_error(vgg_tiles):
    with pytest.raises(SplitnnError, match="cannot reach the Dask scheduler"):
        run_tile_bench(vgg_tiles, TileBenchOptions(scheduler="tcp://127.0.0.1:9", images=1))


def test_serve_refuses_a_tile_plan(vgg_tiles):
    with pytest.raises(SplitnnError, match="holds a tile plan"):
        splitnn.serve(vgg_tiles, port=0)


def test_neuron_split_layers_run_on_the_workers(sample_path, tmp_path):
    from splitnn.cost_models.profiles import DeviceProfile

    analysis = analyze(load_graph(sample_path("vgg16", 64)))
    board = load_device("rockpro64")
    small = DeviceProfile(**{**board.__dict__, "name": "small", "ram_bytes": 42_500_000})
    outdir = tmp_path / "split-fc"
    write_tiles(analysis, plan_tiles(analysis, 2, small, (2, 2), "maxpool2_out", stacks=1), outdir)
    report = run_tile_bench(outdir, TileBenchOptions(images=1, scaling=False)).to_dict()
    assert report["outputs_match"] is True and report["max_abs_err"] < 1e-4
    assert [s["node"] for s in report["neuron_splits"]] == ["fc2"]
    # Slice 0 lives on the worker the drill kills: the images after it still need the slice, so the
    # scheduler must rebuild it on another worker (scattered data would be lost with its worker).
    report = run_tile_bench(outdir, TileBenchOptions(images=3, scaling=False, kill_worker_after_s=0)).to_dict()
    assert report["workers_killed"] == 1 and report["outputs_match"] is True


def test_reuse_runs_in_two_phases_on_the_workers(sample_path, tmp_path):
    analysis = analyze(load_graph(sample_path("vgg16", 96)))
    outdir = tmp_path / "reuse"
    write_tiles(analysis, plan_tiles(analysis, 2, load_device("rockpro64"), (3, 3), "maxpool2_out", stacks=1), outdir, reuse=True)
    report = run_tile_bench(outdir, TileBenchOptions(images=1, scaling=False)).to_dict()
    assert report["outputs_match"] is True and report["reuse"]["enabled"] and report["reuse"]["saved_macs"] > 0
    assert sorted(tile["id"] for tile in report["tiles"]) == list(range(9))


def test_a_worker_holds_the_stack_weights_once_however_many_tiles_it_runs(sample_path, tmp_path):
    # VGG-16 up to its fourth pooling layer: 30.5 MB of conv weights, 9 tiles, all on one worker. With a
    # copy of the weights per tile session it grew by 651 MB; holding them once, by 50 MB.
    analysis = analyze(load_graph(sample_path("vgg16", 96)))
    outdir = tmp_path / "vgg-pool4"
    plan = plan_tiles(analysis, 1, load_device("rockpro64"), (3, 3), "maxpool4_out", stacks=1)
    write_tiles(analysis, plan, outdir)
    report = run_tile_bench(outdir, TileBenchOptions(images=1, scaling=False)).to_dict()
    assert report["outputs_match"] is True and report["workers"] == 1
    memory = report["memory"]
    weights = plan.stack_param_bytes
    assert weights > 25e6 and memory["planned_node_bytes"] == plan.node_memory_bytes
    (worker,) = memory["workers"]
    assert worker["growth_bytes"] == memory["max_growth_bytes"] > weights * 0.9  # the weights are really there
    assert memory["max_growth_bytes"] < 3 * weights  # ...once, not once per tile (that would be 9x)


def test_tiles_are_dealt_into_balanced_groups_one_per_worker():
    from splitnn.onnxsplit.tiles.dask_runtime import tile_groups, tile_task_count

    predicted = [5.0, 3.0, 3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]  # a 3x3 grid: the middle tile the largest
    groups = tile_groups(predicted, tile_task_count(len(predicted), 2))
    assert len(groups) == 2 and sorted(i for g in groups for i in g) == list(range(9))  # every tile once
    loads = sorted(sum(predicted[i] for i in g) for g in groups)
    assert loads == [10.0, 10.0] and all(g == sorted(g) for g in groups)
    assert tile_task_count(2, 4) == 2  # never more tasks than tiles


def test_a_script_without_a_main_guard_is_told_what_to_do(vgg_tiles, tmp_path):
    """A script that runs a tile plan at import time: each local Dask worker is a new Python process that imports
    the script again, and Dask's own error ("Nanny failed to start") becomes one line saying what to change."""
    import subprocess
    import sys

    script = tmp_path / "bench_tiles.py"
    script.write_text(f"import splitnn\nsplitnn.run_bench({str(vgg_tiles)!r}, images=1, workers=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].endswith(
        'must do so under `if __name__ == "__main__":`, because each worker is a new Python process that imports the '
        "script")

"""What the command line prints of flows the library tests run through the API (tests/cost_models,
tests/onnxsplit): its warning lines, tables and refusals, one command each."""
from __future__ import annotations

import re

import pytest

import splitnn
from tests.cost_models.test_unpriced_ops import _determinants
from tests.helpers import assert_bad_input, run_cli


def test_partition_and_run_bench_warn_of_unpriced_nodes_in_one_line(tmp_path, capsys):
    """tests/cost_models/test_unpriced_ops.py: the plan's unpriced nodes and the API's warning."""
    model = _determinants(tmp_path / "det.onnx")
    proc = run_cli("partition", str(model), "-o", str(tmp_path / "split"), "--link", "4g", "--no-ort")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "1 node of an operator with no cost formula (Det x1) priced at 0 s" in warnings[0]
    assert "the predictions ignore their work" in warnings[0]
    from splitnn.cli.run_bench import _warn_unpriced  # what run-bench says before it runs the plan

    _warn_unpriced(str(tmp_path / "split"))
    assert "warning: 1 node of an operator with no cost formula (Det x1)" in capsys.readouterr().err


def test_partition_gives_no_warning_when_every_node_is_priced(sample_path, tmp_path):
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(tmp_path / "split"), "--link", "4g", "--no-ort")
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr


@pytest.mark.parametrize("args, says", [(["--grid", "3by3"], "must be RxC"),
                                        (["--stacks", "two"], "--stacks 'two' must be a whole number"),
                                        (["--stacks", "0"], "--stacks '0' must be a whole number")])
def test_partition_refuses_a_tile_option_it_cannot_read(sample_path, tmp_path, args, says):
    """The options as text (tests/onnxsplit/tiles: the same refusals from jobs.choices.tile_planning)."""
    assert_bad_input(run_cli("partition", str(sample_path("vgg16", 64)), "-o", str(tmp_path / "u"), "--strategy",
                             "tiles", *args), says)
    assert not (tmp_path / "u").exists()


def test_partition_prints_each_stack(sample_path, tmp_path):
    """tests/onnxsplit/tiles/test_planning.py: the plan's stacks."""
    proc = run_cli("partition", str(sample_path("vgg16", 64)), "-o", str(tmp_path / "t"), "--strategy", "tiles",
                   "--stacks", "2", "--grid", "1x2")
    assert proc.returncode == 0, proc.stderr
    assert "2 fused stacks in turn" in proc.stdout and "stack 2:" in proc.stdout


@pytest.fixture(scope="module")
def two_stacks(sample_path, tmp_path_factory):
    """VGG-16 at 64 in two stacks of 1x2 tiles, written by the API."""
    outdir = tmp_path_factory.mktemp("tiles") / "t"
    splitnn.partition(sample_path("vgg16", 64), outdir, strategy="tiles", stacks=2, grid=(1, 2))
    return outdir


def test_run_bench_prints_a_tile_plans_tables(two_stacks):
    """tests/onnxsplit/tiles/test_dask_runtime.py and test_planning.py: the report's data."""
    proc = run_cli("run-bench", str(two_stacks), "--images", "1", "--no-scaling", "--emulate-nodes")
    assert proc.returncode == 0, proc.stderr
    assert "Scaling" in proc.stdout and "outputs match" in proc.stdout
    assert "Per phase" in proc.stdout and "tiles: 1x2 to" in proc.stdout and "whole image" in proc.stdout
    assert "nodes emulated as rockpro64" in proc.stdout
    # The plan's figures for its 2 nodes beside the run's, each off by a signed percentage.
    assert re.search(r"predicted by the plan for 2 nodes: tiles [\d.]+ ms, image [\d.]+ ms .*measured on 2 workers, "
                     r"held to rockpro64's times: tiles [\d.]+ ms \([+-]\d+%\)", proc.stdout)


def test_serve_refuses_a_tile_plan(two_stacks):
    proc = run_cli("serve", str(two_stacks), "--port", "0")
    assert proc.returncode == 2 and "holds a tile plan" in proc.stderr


def test_run_bench_refuses_tile_options_for_a_vertical_plan(lenet_plan):
    """The option as the command line names it (the API's refusal: tests/onnxsplit/tiles/test_dask_runtime.py)."""
    assert_bad_input(run_cli("run-bench", str(lenet_plan), "--workers", "2"), "--workers applies only to tile plans")


def test_run_bench_refuses_link_and_split_options_for_a_tile_plan(two_stacks):
    """A tile plan runs on Dask: --deadline, --stream and the link's options were ignored on one, and are refused by
    name, before any cluster starts."""
    assert_bad_input(run_cli("run-bench", str(two_stacks), "--deadline", "100ms"),
                     "--deadline applies to a split over an emulated link; a tile plan runs on Dask: drop it")
    assert_bad_input(run_cli("run-bench", str(two_stacks), "--stream", "--rtt", "10ms"),
                     "--rtt, --stream apply to a split over an emulated link")

"""What `splitnn partition --machines` prints and refuses (the plan's data: tests/onnxsplit/pipeline)."""
from __future__ import annotations

import pytest

from tests.helpers import assert_bad_input, run_cli
from tests.onnxsplit.pipeline.test_planning import machines_file


@pytest.fixture(scope="module")
def partitioned(sample_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    machines_file(folder, [("board", "rockpro64", 'memory = "150MB"\nsource = true'), ("pi", "raspberry-pi-4", ""),
                           ("cloud", "cloud-cpu", "")], [("board", "pi", "wifi"), ("pi", "cloud", "4g"),
                                                         ("board", "cloud", "4g")])
    proc = run_cli("partition", str(sample_path("alexnet", 64)), "--machines", str(folder / "machines.toml"),
                   "-o", str(folder / "out"), "--objective", "throughput")
    return folder / "out", proc


def test_partition_over_machines_prints_stages_hops_and_the_comparisons(partitioned):
    _, proc = partitioned
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Pipeline plan over 3 machines" in out and "Stages" in out and "Hops" in out
    assert "frames/s streamed" in out and "the best two-machine plan" in out and "the source alone" in out
    assert "verified: the stages chained against the model" in out


def test_a_bad_machines_file_is_one_line_and_exit_2(sample_path, tmp_path):
    (tmp_path / "m.toml").write_text('[[machine]]\nname = "a"\nprofile = "rockpro64"\n')
    assert_bad_input(run_cli("partition", str(sample_path("lenet5")), "--machines", str(tmp_path / "m.toml"),
                             "-o", str(tmp_path / "out")), "no machines have source = true")
    assert not (tmp_path / "out").exists()


def test_machines_and_tiles_are_refused_together(sample_path, tmp_path):
    (tmp_path / "m.toml").write_text('[[machine]]\nname = "a"\nprofile = "rockpro64"\nsource = true\n')
    assert_bad_input(run_cli("partition", str(sample_path("lenet5")), "--machines", str(tmp_path / "m.toml"),
                             "--strategy", "tiles", "-o", str(tmp_path / "out")), "drop --strategy tiles")


def test_run_bench_prints_each_stage_and_hop_beside_its_prediction(partitioned):
    folder, _ = partitioned
    proc = run_cli("run-bench", str(folder), "--requests", "2", "--stream")
    assert proc.returncode == 0, proc.stderr
    assert "Per stage and hop" in proc.stdout and "latency p50" in proc.stdout and "stream:" in proc.stdout
    assert "for this run" in proc.stdout and "outputs match" in proc.stdout
    # the baselines, run after the plan: this plan is over two machines, so the source alone, beside the plan
    assert "this plan" in proc.stdout and "source alone" in proc.stdout, proc.stdout
    assert "the plan is itself the best two-machine plan" in proc.stdout
    assert_bad_input(run_cli("run-bench", str(folder), "--link", "3g"), "--link applies to a split over one emulated link")


def test_update_weights_on_a_pipeline_plan_says_what_each_machine_downloads(partitioned, sample_path):
    """The same weights: every stage is told it downloads nothing, and the chained stages are verified."""
    folder, _ = partitioned
    proc = run_cli("update-weights", str(folder), "--from", str(sample_path("alexnet", 64)))
    assert proc.returncode == 0, proc.stderr
    assert "stage on board: 0 tensors changed" in proc.stdout and "it must download 0 B" in proc.stdout, proc.stdout
    assert "verified: the stages chained match the retrained model" in proc.stdout

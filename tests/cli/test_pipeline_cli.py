"""What `splitnn partition --machines` prints and refuses (the plan's data: tests/onnxsplit/pipeline)."""
from __future__ import annotations

from tests.helpers import assert_bad_input, run_cli
from tests.onnxsplit.pipeline.test_planning import machines_file


def test_partition_over_machines_prints_stages_hops_and_the_comparisons(sample_path, tmp_path):
    machines_file(tmp_path, [("board", "rockpro64", 'memory = "150MB"\nsource = true'), ("pi", "raspberry-pi-4", ""),
                             ("cloud", "cloud-cpu", "")], [("board", "pi", "wifi"), ("pi", "cloud", "4g"),
                                                           ("board", "cloud", "4g")])
    proc = run_cli("partition", str(sample_path("alexnet", 64)), "--machines", str(tmp_path / "machines.toml"),
                   "-o", str(tmp_path / "out"), "--objective", "throughput")
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

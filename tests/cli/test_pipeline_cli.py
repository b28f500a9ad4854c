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
    assert "baseline two machines: the plan itself" in proc.stdout
    assert_bad_input(run_cli("run-bench", str(folder), "--link", "3g"), "--link applies to a split over one emulated link")


def test_update_weights_on_a_pipeline_plan_says_what_each_machine_downloads(partitioned, sample_path):
    """The same weights: every stage is told it downloads nothing, and the chained stages are verified."""
    folder, _ = partitioned
    proc = run_cli("update-weights", str(folder), "--from", str(sample_path("alexnet", 64)))
    assert proc.returncode == 0, proc.stderr
    assert "stage on board: 0 tensors changed" in proc.stdout and "it must download 0 B" in proc.stdout, proc.stdout
    assert "verified: the stages chained match the retrained model" in proc.stdout


def _serve_stage(folder, machine, next_address, token, tls):
    """`splitnn serve --stage` as a child process on a free port, TLS both ways with the pair `tls`; returns it and
    where it listens."""
    import subprocess
    import sys

    cert, key = tls
    proc = subprocess.Popen([sys.executable, "-m", "splitnn.cli", "serve", str(folder), "--stage", machine, "--next",
                             next_address, "--port", "0", "--token-file", str(token), "--tls-cert", str(cert),
                             "--tls-key", str(key), "--next-tls-ca", str(cert)], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert f"serving the stage of {machine}" in line, line
    return proc, line.split(" on ")[1].split(",")[0]


def test_each_stage_served_on_its_own_and_the_source_as_device(partitioned, tmp_path):
    """issue 33, item 5, as a user runs it on real machines (here one): `serve --stage` per machine after the
    source, the last sending to the source's --answers, then `device` at the source; the token and TLS on every
    hop, the answers' included."""
    import socket

    from splitnn.onnxsplit.runtime.tls import write_self_signed

    folder, _ = partitioned
    cert, key = write_self_signed(tmp_path / "tls")
    plan = __import__("json").loads((folder / "plan.json").read_text())
    machines = [stage["machine"] for stage in plan["stages"]]
    token = tmp_path / "token.txt"
    token.write_text("s3cret\n")
    with socket.socket() as probe:  # a free port for the source's answers
        probe.bind(("127.0.0.1", 0))
        answers = f"127.0.0.1:{probe.getsockname()[1]}"
    processes, next_address = [], answers
    try:
        for machine in reversed(machines[1:]):
            proc, next_address = _serve_stage(folder, machine, next_address, token, (cert, key))
            processes.append(proc)
        proc = run_cli("device", str(folder), "--server", next_address, "--answers", answers, "--random", "2",
                       "--token-file", str(token), "--tls-ca", str(cert), "--answers-tls-cert", str(cert),
                       "--answers-tls-key", str(key), "--json")
        assert proc.returncode == 0, proc.stderr
        report = __import__("json").loads(proc.stdout)
        assert report["ok"] == 2 and all(r["e2e_s"] > 0 for r in report["requests"])
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
    assert_bad_input(run_cli("device", str(folder), "--server", next_address, "--random", "1"),
                     "a pipeline plan's source needs --answers HOST:PORT")
    assert_bad_input(run_cli("serve", str(folder), "--stage", machines[-1]), "add --next HOST:PORT")

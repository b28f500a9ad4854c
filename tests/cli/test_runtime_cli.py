from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import assert_bad_input, run_cli, session


@pytest.fixture(scope="module")
def plan_dir(sample_path, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("bench") / "lenet"
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(outdir), "--link", "wifi", "--cut", "averagepool2_out")
    assert proc.returncode == 0, proc.stderr
    return outdir


def test_run_bench_json_report(plan_dir):
    proc = run_cli("run-bench", str(plan_dir), "--requests", "3", "--bandwidth", "50Mbit", "--rtt", "4ms",
                   "--device-slowdown", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"] == 3 and report["ok"] + report["errors"] == 3 and report["ok"] == 3
    assert set(report["stages"]) == {"device_s", "encode_s", "transfer_s", "server_s", "decode_s", "e2e_s"}
    assert all({"p50", "p95"} <= set(v) for v in report["stages"].values())
    assert report["outputs_match"] is True and report["max_abs_err"] < 1e-4
    assert report["slowdown"] == {"factor": 2.0, "source": "given", "emulated": True, "encode_board_s": 0.0}
    assert report["link"]["uplink_bps"] == 50e6 and report["link"]["rtt_s"] == pytest.approx(0.004)
    # The 4 ms round trip is really there: the transfer can never beat it.
    assert report["stages"]["transfer_s"]["p50"] >= 0.004
    assert report["bound_s"] >= report["stages"]["device_s"]["p50"] + 0.004
    assert report["baselines"]["all_device_s"] > 0 and report["baselines"]["all_server_s"] >= 0.004
    assert report["bytes_per_request"]["up"] > 0 and report["predicted_s"] == report["predicted"]["total_s"]


def test_run_bench_table_with_loss_and_outage(plan_dir):
    proc = run_cli("run-bench", str(plan_dir), "--requests", "2", "--loss", "0.05", "--jitter", "1ms",
                   "--outage", "0-0.3", "--no-baselines", "--device-slowdown", "1")
    assert proc.returncode == 0, proc.stderr
    assert "end to end" in proc.stdout and "2 ok, 0 errors" in proc.stdout and "outputs match" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--outage", "5"], "--outage '5' must be START-END"),
    (["--device-slowdown", "0.5"], "at least 1"),
    (["--device-slowdown", "fast"], "must be a number"),
    (["--loss", "1"], "Invalid value for '--loss'"),
    (["--trace", "missing.csv"], "cannot read trace"),
    (["--fps", "5"], "--fps paces a stream: add --stream"),
    (["--top", "3"], "--top applies only with --sweep"),
    (["--rounds", "3"], "--rounds applies only with --sweep"),
    (["--device", "rockpro64", "--objective", "latency"], "--device, --objective apply only with --sweep"),
    (["--sweep", "--stream"], "drop --stream"),
    (["--sweep", "--deadline", "100ms"], "--deadline applies to adaptive plans"),
    (["--plot", "x.svg", "--no-baselines"], "must name a .png file"),
])
def test_run_bench_bad_options(plan_dir, args, message):
    proc = run_cli("run-bench", str(plan_dir), "--requests", "1", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_run_bench_stream_report(plan_dir):
    proc = run_cli("run-bench", str(plan_dir), "--requests", "4", "--stream", "--no-baselines", "--device-slowdown", "3",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    stream = json.loads(proc.stdout)["stream"]
    assert stream["frames"] == 4 and stream["ok"] + stream["errors"] == 4 and stream["ok"] == 4
    assert set(stream["stage_periods_s"]) == {"device_s", "uplink_s", "server_s", "downlink_s"}
    periods = stream["stage_periods_s"]
    assert stream["bound_fps"] == pytest.approx(1 / max(periods.values()))
    assert stream["bottleneck"] == max(periods, key=periods.get)
    assert stream["throughput_fps"] > 0 and stream["ratio"] == pytest.approx(stream["throughput_fps"] / stream["bound_fps"])


def test_run_bench_without_a_plan(tmp_path):
    """One line, the error's: it came after an empty line, which rich's progress display printed when it stopped on
    a stderr that is no terminal (issue 30, item 9)."""
    assert_bad_input(run_cli("run-bench", str(tmp_path)), "has no plan.json")


def test_serve_and_device_as_two_processes(plan_dir, tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "splitnn.cli", "serve", str(plan_dir), "--port", "0"], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        while line and "serving" not in line:  # a line on batching may come first
            line = server.stderr.readline()
        assert "serving" in line, line
        address = line.split(" on ")[1].split()[0]
        plan = json.loads((plan_dir / "plan.json").read_text())
        shape = plan["inputs"]["input"]["shape"]
        np.save(tmp_path / "x.npy", np.random.default_rng(0).random(shape).astype(np.float32))
        proc = run_cli("device", str(plan_dir), "--server", address, "--input", str(tmp_path / "x.npy"),
                       "-o", str(tmp_path / "out.npz"), "--json", "--name", "board-7")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["ok"] == 1
        assert np.load(tmp_path / "out.npz")[plan["outputs"][0]].shape == (1, 10)
        proc = run_cli("device", str(plan_dir), "--server", address)
        assert proc.returncode == 2 and "exactly one of --input" in proc.stderr
    finally:
        server.terminate()  # SIGTERM: drains, logs its counters, exits 0
        assert server.wait(timeout=30) == 0
    log = server.stderr.read()
    assert "draining: no new connections" in log
    assert "device board-7 (127.0.0.1): 1 ok, 0 errors, 1 connection(s)" in log and "served 1 requests" in log
    proc = run_cli("device", str(plan_dir), "--server", address, "--random", "1", "--timeout", "2")
    assert proc.returncode == 2 and "cannot reach the server" in proc.stderr


def test_an_all_device_plan_sends_nothing(sample_path, tmp_path):
    outdir = tmp_path / "local"
    proc = run_cli("partition", str(sample_path("lenet5")), "-o", str(outdir), "--cut", "")  # sends nothing
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("run-bench", str(outdir), "--requests", "2", "--no-baselines", "--device-slowdown", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] == 2 and report["bytes_per_request"] == {"up": 0, "down": 0} and report["stream"] is None
    assert report["stages"]["transfer_s"]["p50"] == 0 and report["outputs_match"] is True


def test_run_bench_sweep_json_and_plot(sample_path, tmp_path):
    plot = tmp_path / "sweep.png"
    proc = run_cli("run-bench", str(sample_path("lenet5")), "--sweep", "--link", "wifi", "--top", "2", "--requests", "2",
                   "--device-slowdown", "2", "--json", "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["server"] == "host" and report["device"] == "rockpro64" and report["objective"] == "latency"
    assert 2 <= len(report["sweep"]) <= 3  # the 2 best by prediction, and the chosen one if not among them
    for point in report["sweep"]:
        assert {"tensors", "predicted_s", "measured_s"} <= set(point) and point["ok"] == 2
    assert report["regret"] == pytest.approx(report["chosen"]["measured_s"] / report["best"]["measured_s"])
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_run_bench_plot_of_one_plan(plan_dir, tmp_path):
    plot = tmp_path / "bench.png"
    proc = run_cli("run-bench", str(plan_dir), "--requests", "2", "--device-slowdown", "1", "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes().startswith(b"\x89PNG") and "plot written to" in proc.stderr


def test_serve_and_device_on_an_adaptive_plan(sample_path, tmp_path):
    """Issue 13, item 8: across two processes the device estimates the link, picks a kept cut per request and,
    with a deadline, answers alone when the server is gone."""
    from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
    from splitnn.onnxsplit.artifacts.plan_file import read_plan

    model = sample_path("alexnet")
    proc = run_cli("partition", str(model), "-o", "ad", "--link", "4g", "--adaptive", "--bandwidth-range",
                   "0.1Mbit-100Mbit", "--no-ort", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "ad" / "plan.json").read_text())
    alone = next(k for k in plan["kept"] if k["server_model"] is None)
    server = subprocess.Popen([sys.executable, "-m", "splitnn.cli", "serve", "ad", "--port", "0"], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert f"({len(plan['kept']) - 1} cuts of an adaptive plan)" in line, line
        address = line.split(" on ")[1].split()[0]
        proc = run_cli("device", "ad", "--server", address, "--random", "6", "--json", "-o", "out.npz", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["errors"] == 0 and report["answered_remote"] == 6 and report["probes"] >= 1
        assert {p["cut_id"] for p in report["requests"]} <= {k["cut"]["id"] for k in plan["kept"]}
        assert report["requests"][-1]["estimate_bps"] > 0  # learnt from its own requests
    finally:
        server.terminate()
        server.wait(timeout=10)
    feeds = plan_feeds(read_plan(tmp_path / "ad"), 5)  # the last of the six random inputs
    expected = session(str(model)).run(None, feeds)[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")[plan["outputs"][0]], expected, atol=1e-4, rtol=1e-3)
    deadline = f"{1.5 * alone['predicted']['device_s'] * 1e3:.0f}ms"
    proc = run_cli("device", "ad", "--server", address, "--random", "3", "--deadline", deadline, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["answered_local"] == 3 and report["errors"] == 0  # the server is gone: the device answered
    assert_bad_input(run_cli("device", "ad", "--server", address, "--random", "1", "--deadline", "1ms", cwd=tmp_path),
                     "shorter than the device's own fastest answer")
    assert_bad_input(run_cli("device", "../missing", "--server", address, "--random", "1", cwd=tmp_path), "missing")


def test_a_codec_at_the_cut_is_measured_at_partition_and_used_by_the_run(sample_path, tmp_path):
    """issue 14: partition --codec records the real encoded bytes and the outputs' change; the device sends in it,
    the server decodes, and run-bench sees the bytes and outputs partition measured."""
    model = str(sample_path("alexnet"))
    proc = run_cli("partition", model, "-o", "plan", "--cut", "relu3_out", "--codec", "int8+lossless", "--no-ort",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "codec int8+lossless" in proc.stdout
    written = json.loads((tmp_path / "plan" / "plan.json").read_text())
    codec = written["codec"]
    raw = next(c for c in written["candidates"] if c["id"] == written["cut"]["id"])["predicted"]
    assert written["predicted"]["transfer_s"] < raw["transfer_s"] / 3  # the chosen cut is priced at the coded bytes
    assert codec["name"] == "int8+lossless" and codec["raw_bytes"] / codec["coded_bytes"] >= 3.9
    assert 0 < codec["max_rel_err"] < 0.05 and codec["same_top1"] is True
    proc = run_cli("run-bench", "plan", "--requests", "2", "--no-baselines", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["codec"] == "int8+lossless" and report["outputs_match"] is True
    assert report["max_abs_err"] == pytest.approx(codec["max_abs_err"], rel=1e-3)  # the same input, the same error
    up = report["bytes_per_request"]["up"]
    assert codec["coded_bytes"] < up < codec["coded_bytes"] + 200  # the coded tensors and the frame around them
    proc = run_cli("partition", model, "-o", "auto", "--codec", "auto", "--no-ort", "--json", "--plot", "pairs.png",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = json.loads(proc.stdout)["codec_trials"]  # every pair priced, in plan.json too
    assert trials and trials[0]["verdict"].startswith("chosen") and "random input" in proc.stderr
    assert (tmp_path / "pairs.png").read_bytes().startswith(b"\x89PNG") and "wrote pairs.png" in proc.stderr
    assert_bad_input(run_cli("partition", model, "-o", "x", "--codec", "int9", cwd=tmp_path), "unknown codec 'int9'")
    assert_bad_input(run_cli("partition", model, "-o", "x", "--codec", "fp16", "--plot", "p.png", cwd=tmp_path),
                     "--plot 'p.png' draws the pairs --codec auto prices")
    assert not (tmp_path / "x").exists()


def test_a_calibrated_codec_on_a_real_classifier_and_real_text_lines(tmp_path):
    """issue 14: the PP-OCR direction classifier (a real export) on text lines rendered with Pillow: int8 with
    ranges calibrated on the user's inputs, kept in plan.json, used by device and server, bounded by
    --max-output-change."""
    from tests.helpers import CLS_MODEL, rapidocr_model, text_lines

    lines, _ = text_lines(24)
    np.savez(tmp_path / "lines.npz", x=np.stack(lines))  # [24, 1, 3, 48, 192]
    model = str(rapidocr_model(CLS_MODEL))
    common = ("--input-shape", "x:1x3x48x192", "--cut", "relu_4.tmp_0", "--no-ort", "--codec", "int8:calibrated",
              "--calibration", "lines.npz")
    proc = run_cli("partition", model, "-o", "plan", *common, "--max-output-change", "agreement>=0.9", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    codec = json.loads((tmp_path / "plan" / "plan.json").read_text())["codec"]
    assert codec["name"] == "int8:calibrated" and codec["inputs"] == 24 and codec["calibration"] == "lines.npz"
    assert len(codec["ranges"]) == 1 and len(codec["ranges"][0]["low"]) == 24  # one range per channel
    assert codec["raw_bytes"] / codec["coded_bytes"] >= 3.95  # no ranges on the wire
    assert codec["agreement"] >= 0.9
    proc = run_cli("run-bench", "plan", "--requests", "2", "--no-baselines", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["codec"] == "int8:calibrated" and report["outputs_match"] is True
    assert report["bytes_per_request"]["up"] < codec["coded_bytes"] + 200
    # A bound no int8 codec meets: refused, naming what was reached, and nothing written.
    proc = run_cli("partition", model, "-o", "strict", *common, "--max-output-change", "abserr<=0", cwd=tmp_path)
    assert_bad_input(proc, "reached abserr")
    assert not (tmp_path / "strict").exists()
    assert_bad_input(run_cli("partition", model, "-o", "x", "--codec", "int8:calibrated", cwd=tmp_path),
                     "add --calibration")


def test_the_input_as_a_jpeg_on_a_real_classifier_and_real_pages(tmp_path):
    """issue 14: --codec jpeg:90 sends the orientation classifier's input (a real Paddle export) as a JPEG, all else
    on the server, with the pixel range taken from the user's images; run-bench sends it so; --codec auto prices
    the JPEG baseline even where the board alone wins."""
    from tests.helpers import MAGIKA, ORIENTATION, document_pages, packaged_model

    (tmp_path / "pages").mkdir()
    for i, page in enumerate(document_pages(8)[0]):
        page.save(tmp_path / "pages" / f"page{i}.png")
    model = str(packaged_model(*ORIENTATION[:2]))
    common = ("--input-shape", "x:1x3x224x224", "--link", "3g", "--no-ort", "--calibration", "pages",
              "--preprocess", "imagenet")
    proc = run_cli("partition", model, "-o", "jpeg", *common, "--codec", "jpeg:90", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "x travels as an image" in proc.stdout
    written = json.loads((tmp_path / "jpeg" / "plan.json").read_text())
    codec = written["codec"]
    assert written["cut"]["id"] == 0 and written["cut"]["tensors"] == ["x"]  # everything on the server
    assert codec["name"] == "jpeg:90" and codec["inputs"] == 8 and codec["agreement"] == 1.0
    assert codec["raw_bytes"] / codec["coded_bytes"] >= 20
    (pixel_range,) = codec["ranges"]
    assert pixel_range["low"][0] == pytest.approx((0 - 0.485) / 0.229, abs=1e-3)  # black text, ImageNet's mean
    # The encoding is priced on the board: this machine's time, scaled by the image codec references (the board's
    # estimated in its TOML; host: the tests' own cached profile, which the command read too).
    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.host import host_profile

    board = load_device("rockpro64")
    assert codec["device_scale"] == pytest.approx(board.image_codec_s / host_profile().image_codec_s)
    # The report says what the board's encode is priced at, and by how many times this machine's.
    assert (f"{codec['encode_s'] * 1e3:.2f} ms here, {codec['encode_s'] * codec['device_scale'] * 1e3:.2f} ms on the "
            f"device (x{codec['device_scale']:.2f})") in " ".join(proc.stdout.split())
    assert written["predicted"]["encode_s"] == pytest.approx(
        codec["encode_s"] * codec["device_scale"] + 3 * 224 * 224 * 4 / board.memory_bytes_per_s, rel=1e-6)
    proc = run_cli("run-bench", "jpeg", "--requests", "2", "--no-baselines", "--stream", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["codec"] == "jpeg:90" and report["outputs_match"] is True and report["same_top1"] is True
    # The emulated board takes the codec's predicted time to encode (as it takes the part's to compute).
    assert report["slowdown"]["encode_board_s"] == pytest.approx(codec["encode_s"] * codec["device_scale"])
    # It sends the first page, whose JPEG is not the median's size: far fewer bytes than the float32 input all the same.
    up = report["bytes_per_request"]["up"]
    assert up < codec["raw_bytes"] / 20
    # The stream sends the same coded frames (its uplink period is its frame's bytes over the 3G rate).
    assert report["stream"]["ok"] == 2
    assert report["stream"]["stage_periods_s"]["uplink_s"] == pytest.approx(up * 8 / report["link"]["uplink_bps"], rel=0.01)
    proc = run_cli("partition", model, "-o", "auto", *common, "--codec", "auto", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["cut"]["tensors"] == []  # at 3G this board answers alone faster than any JPEG arrives...
    baseline = [t for t in plan["codec_trials"] if t["cut_id"] == 0]
    assert {t["codec"] for t in baseline} >= {"jpeg:90", "jpeg:70", "webp:80", "png"}  # ...and the report says by how much
    assert min(t["total_s"] for t in baseline) > plan["predicted"]["total_s"]
    assert_bad_input(run_cli("partition", str(packaged_model(*MAGIKA[:2])), "-o", "x", "--input-shape", "bytes:1x2048",
                             "--codec", "jpeg:90", "--calibration", "pages", cwd=tmp_path), "no input is one image")
    assert not (tmp_path / "x").exists()


def test_the_answer_travels_coded_on_a_real_detector_and_real_pages(tmp_path):
    """issue 14: --reply-codec codes the server's answer. The PP-OCRv4 detector (a real Paddle export) cut near its
    end returns a 320x320 probability map (409.7 kB as float32): on pages of rendered text, lossless coding keeps it
    exact in a fraction of the bytes; the prediction prices the coded answer, the server sends it, the device
    decodes it by the codec's name, and run-bench measures it."""
    from tests.helpers import DET_MODEL, document_pages, rapidocr_model

    (tmp_path / "pages").mkdir()
    for i, page in enumerate(document_pages(4)[0]):
        page.save(tmp_path / "pages" / f"page{i}.png")
    model = str(rapidocr_model(DET_MODEL))
    common = ("--input-shape", "x:1x3x320x320", "--link", "3g", "--cut", "batch_norm_0.tmp_4", "--no-ort",
              "--calibration", "pages", "--preprocess", "imagenet")
    proc = run_cli("partition", model, "-o", "plan", *common, "--reply-codec", "lossless", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reply codec lossless" in proc.stdout
    written = json.loads((tmp_path / "plan" / "plan.json").read_text())
    reply = written["reply_codec"]
    assert reply["name"] == "lossless" and reply["inputs"] == 4 and reply["max_abs_err"] == 0.0
    assert reply["raw_bytes"] > 400_000 and reply["raw_bytes"] / reply["coded_bytes"] >= 5
    plain = next(c for c in written["candidates"] if c["id"] == written["cut"]["id"])["predicted"]
    saved_s = (reply["raw_bytes"] - reply["coded_bytes"]) * 8 / 1.1e6  # 3G's downlink, as its uplink
    # The answer's encode on the server is in the transfer, its decode on the board is the decode stage.
    assert plain["transfer_s"] - written["predicted"]["transfer_s"] == pytest.approx(
        saved_s - reply["server_encode_s"], rel=1e-3)
    assert written["predicted"]["decode_s"] == pytest.approx(reply["device_decode_s"])
    proc = run_cli("run-bench", "plan", "--link", "wifi", "--requests", "2", "--no-baselines", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reply_codec"] == "lossless" and report["outputs_match"] is True and report["max_abs_err"] == 0.0
    assert report["bytes_per_request"]["down"] < reply["raw_bytes"] / 5
    # The emulated board decodes the answer in its predicted time at least (the decode stage).
    assert report["stages"]["decode_s"]["p50"] >= reply["device_decode_s"] - reply["decode_s"]
    # auto: with a lossy codec at the cut too, the answer's codec is the one back soonest within the default bound
    # on its own change, and the record gives both codecs' change together.
    proc = run_cli("partition", model, "-o", "auto", *common, "--codec", "int8+lossless", "--reply-codec", "auto",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "auto" / "plan.json").read_text())
    assert written["reply_codec"]["name"] in ("lossless", "fp16+lossless", "int8+lossless")
    assert written["reply_codec"]["raw_bytes"] / written["reply_codec"]["coded_bytes"] >= 16
    assert written["reply_codec"]["max_abs_err"] >= written["codec"]["max_abs_err"] * 0.9  # both codecs' change
    for bad, message in (("int8:calibrated", "frames describe themselves"), ("webp:90", "frames describe themselves"),
                         ("int9", "unknown codec 'int9'")):
        assert_bad_input(run_cli("partition", model, "-o", "x", *common, "--reply-codec", bad, cwd=tmp_path), message)
    proc = run_cli("partition", model, "-o", "x", "--input-shape", "x:1x3x320x320", "--strategy", "tiles",
                   "--reply-codec", "fp16", cwd=tmp_path)
    assert_bad_input(proc, "--reply-codec applies to a split between a device and a server")
    assert not (tmp_path / "x").exists()


def test_serve_and_device_refuse_bad_tls_files_in_one_line(lenet_plan, tmp_path):
    """The commands' TLS options: a certificate without its key, a key of another pair, a CA file that is not PEM."""
    from splitnn.onnxsplit.runtime.tls import write_self_signed

    cert, _ = write_self_signed(tmp_path / "a")
    _, other_key = write_self_signed(tmp_path / "b")
    assert_bad_input(run_cli("serve", str(lenet_plan), "--port", "0", "--tls-cert", str(cert)), "both --tls-cert and --tls-key")
    assert_bad_input(run_cli("serve", str(lenet_plan), "--port", "0", "--tls-cert", str(cert), "--tls-key", str(other_key)),
                     "does not match its key")
    assert_bad_input(run_cli("device", str(lenet_plan), "--server", "127.0.0.1:9", "--random", "1", "--tls-ca",
                             str(tmp_path / "nothing.pem")), "cannot be read as PEM")


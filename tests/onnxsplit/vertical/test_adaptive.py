"""An adaptive plan: every cut best somewhere in a range, each verified, the server's weights stored once."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import onnx
import pytest

import splitnn

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.artifacts.plan_file import read_plan
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.vertical.adaptive import plan_adaptive, write_adaptive
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import session


def test_every_kept_cut_runs_from_one_device_graph_and_shared_server_weights(sample_path, tmp_path):
    path = sample_path("alexnet")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    adaptive = plan_adaptive(plan, 0.1e6, 100e6)
    document = write_adaptive(analysis, adaptive, tmp_path / "ad", ort_format=False)
    kept = document.kept
    assert len(kept) >= 3 and document.answers_alone and not kept[-1].cut.tensors  # the board alone when slow
    assert document.verification.passed and document.verification.max_abs_err < 1e-4
    assert isinstance(read_plan(tmp_path / "ad"), type(document))
    # Each weight once: the server blob is no bigger than the weights its graphs read, taken once.
    blob = (tmp_path / "ad" / "server" / "weights.bin").stat().st_size
    read = {t.name for k in kept if k.server_model for t in onnx.load(str(tmp_path / "ad" / k.server_model),
                                                                      load_external_data=False).graph.initializer}
    stored = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    assert blob <= sum(onnx.numpy_helper.to_array(stored[n]).nbytes for n in read if n in stored)
    # Run each cut by hand: the device graph asked for that cut's tensors, then its server graph.
    feeds = random_inputs(analysis.graph)
    expected = session(str(path)).run(None, feeds)[0]
    device = session(str(tmp_path / "ad" / document.artifacts.device_model))
    for k in kept:
        if k.server_model is None:
            answer = device.run(list(analysis.graph.outputs), feeds)[0]
        else:
            made = [t for t in k.cut.tensors if t not in feeds]
            sent = {**{t: feeds[t] for t in k.cut.tensors if t in feeds},
                    **dict(zip(made, device.run(made, feeds) if made else []))}
            answer = session(str(tmp_path / "ad" / k.server_model)).run(None, sent)[0]
        np.testing.assert_allclose(answer, expected, atol=1e-4, rtol=1e-3)


def test_partition_adaptive_and_update_weights_refuses_it(sample_path, tmp_path):
    model = sample_path("vgg16", 64)
    plan = splitnn.partition(model, tmp_path / "ad", adaptive=True, bandwidth_range="0.1Mbit-100Mbit",
                             ort_format=False).to_dict()
    assert plan["strategy"] == "adaptive" and [k["cut"]["id"] for k in plan["kept"]][0] == 0
    written = (tmp_path / "ad" / "plan.json").read_bytes()
    with pytest.raises(splitnn.SplitnnError, match=re.escape("adaptive plan")):
        splitnn.update_weights(tmp_path / "ad", model)
    assert (tmp_path / "ad" / "plan.json").read_bytes() == written  # nothing changed
    with pytest.raises(splitnn.SplitnnError, match=re.escape("--bandwidth-range")):
        splitnn.partition(model, tmp_path / "x", adaptive=True)
    assert not (tmp_path / "x").exists()


def test_run_bench_switches_cuts_as_the_link_drops_and_answers_every_request(sample_path, tmp_path):
    """Fast, then a link too slow for any cut: the device moves from a remote cut to answering alone, and with a
    deadline no request goes unanswered."""
    splitnn.partition(sample_path("alexnet"), tmp_path / "ad", link="4g", adaptive=True,
                      bandwidth_range="0.1Mbit-100Mbit", ort_format=False)
    trace = tmp_path / "drop.csv"
    trace.write_text("time_s,mbps\n0,200\n1,0.2\n")
    # A deadline well above the board's 106 ms leaves the server ~280 ms to answer: a host busy with other work
    # (CI, a shared machine) still answers through the server while the link is fast. At 160 ms it had ~40 ms,
    # and a starved host timed every request out to a local finish.
    report = splitnn.run_bench(tmp_path / "ad", trace=trace, rtt="10ms", deadline="400ms", requests=40).to_dict()
    assert report["requests"] == 40 == report["answered_remote"] + report["answered_local"] + report["errors"]
    assert report["errors"] == 0 and report["answered_remote"] > 0 and report["answered_local"] > 0
    assert len(report["requests_per_cut"]) >= 2 and report["outputs_match"] is True
    assert report["probes"] >= 1  # no estimate at the start: the device measured the link first
    points = report["points"]
    assert points[-1]["answered"] == "local" and points[-1]["true_bps"] == 0.2e6
    with pytest.raises(splitnn.SplitnnError, match=re.escape("shorter than the device")):
        splitnn.run_bench(tmp_path / "ad", deadline="50ms")


def test_compare_static_replays_the_link_with_each_kept_cut_held(sample_path, tmp_path):
    splitnn.partition(sample_path("vgg16", 64), tmp_path / "ad", adaptive=True, bandwidth_range="0.1Mbit-100Mbit",
                      ort_format=False)
    report = splitnn.run_bench(tmp_path / "ad", rtt="10ms", bandwidth="50Mbit", requests=6,
                               compare_static=True).to_dict()
    plan = json.loads((tmp_path / "ad" / "plan.json").read_text())
    assert report.get("held_cut") is None  # (None fields are left out of the JSON)
    assert [r["held_cut"] for r in report["static"]] == [k["cut"]["id"] for k in plan["kept"]]
    for run in report["static"]:  # each held cut answered every request its own way
        assert run["requests"] == 6 and run["errors"] == 0 and set(run["requests_per_cut"]) == {str(run["held_cut"])}
    alone = next(r for r in report["static"] if r["held_cut"] == plan["kept"][-1]["cut"]["id"])
    assert alone["answered_local"] == 6


def test_an_adaptive_plan_sends_each_kept_cut_in_a_codec(sample_path, tmp_path):
    """issue 14 in an adaptive plan: every cut priced at its tensors' bytes in the codec before the kept cuts are
    drawn, each kept cut checked against the bound, and the device sends in it (the server decodes by name)."""
    model = sample_path("alexnet")
    common = dict(link="4g", adaptive=True, bandwidth_range="0.5Mbit-50Mbit", ort_format=False)
    plain = splitnn.partition(model, tmp_path / "plain", **common).to_dict()
    coded = splitnn.partition(model, tmp_path / "ad", **common, codec="int8+lossless").to_dict()
    sending = [k for k in coded["kept"] if k["cut"]["tensors"]]
    assert sending and all(k["codec"]["name"] == "int8+lossless" for k in sending)
    assert all(k["codec"]["raw_bytes"] / k["codec"]["coded_bytes"] > 3 for k in sending)
    for k in sending:  # the latency line's bits are the coded request's (and the float32 reply's)
        assert k["wire_bits"] < k["cut"]["bytes"] * 8 / 2
    # Cheaper bytes keep a remote cut down to a slower link than the plain plan does.
    lowest = min(k["low_bps"] for k in sending)
    assert lowest < min(k["low_bps"] for k in plain["kept"] if k["cut"]["tensors"])
    trace = tmp_path / "fast.csv"
    trace.write_text("time_s,mbps\n0,40\n")
    report = splitnn.run_bench(tmp_path / "ad", trace=trace, rtt="10ms", requests=6).to_dict()
    # As below: after the first, a request may be answered on the device where this host slowed the server.
    assert report["answered_remote"] >= 1 and report["errors"] == 0 and report["outputs_match"] is True
    assert report["points"][0]["answered"] == "remote", report["points"][0]
    with pytest.raises(splitnn.SplitnnError, match=re.escape("not auto")):
        splitnn.partition(model, tmp_path / "x", **common, codec="auto")
    assert not (tmp_path / "x").exists()


def test_an_adaptive_plan_holds_each_cut_s_calibrated_ranges(sample_path, tmp_path):
    """int8:calibrated in an adaptive plan: each kept cut's ranges, from the user's inputs, in its record; the
    device encodes and the server (serve, run-bench) decodes with them."""
    from splitnn.onnxsplit.runtime.server import plan_codecs

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", input=rng.random((6, 3, 224, 224), dtype=np.float32))
    plan = splitnn.partition(sample_path("alexnet"), tmp_path / "ad", link="4g", adaptive=True,
                             bandwidth_range="0.5Mbit-50Mbit", ort_format=False, codec="int8:calibrated+lossless",
                             calibration=tmp_path / "calib.npz")
    sending = [k for k in plan.to_dict()["kept"] if k["cut"]["tensors"]]
    assert sending and all(k["codec"]["name"] == "int8:calibrated+lossless" and k["codec"]["inputs"] == 6 for k in sending)
    assert all({r["name"] for r in k["codec"]["ranges"]} == set(k["cut"]["tensors"]) for k in sending)
    assert set(plan_codecs(tmp_path / "ad")) == {t for k in sending for t in k["cut"]["tensors"]}
    trace = tmp_path / "fast.csv"
    trace.write_text("time_s,mbps\n0,40\n")
    report = splitnn.run_bench(tmp_path / "ad", trace=trace, requests=4).to_dict()
    # The first request goes to the server at its planned figures; the later ones may be answered on the device
    # where this host made the server slower than planned (the device learns it: a matter of timing).
    assert report["answered_remote"] >= 1 and report["errors"] == 0 and report["outputs_match"] is True
    assert report["points"][0]["answered"] == "remote", report["points"][0]


def _pages_and_a_slow_board(tmp_path, count: int) -> None:
    """`count` pages of rendered text in tmp_path/pages, and slow.toml: a board ten times slower than a RockPro64."""
    from dataclasses import replace

    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.profiles import device_to_toml
    from tests.helpers import document_pages

    (tmp_path / "pages").mkdir()
    for i, page in enumerate(document_pages(count)[0]):
        page.save(tmp_path / "pages" / f"page{i}.png")
    board = load_device("rockpro64")
    slow = replace(board, name="slow-board", macs_per_s={k: v / 10 for k, v in board.macs_per_s.items()})
    (tmp_path / "slow.toml").write_text(device_to_toml(slow), encoding="utf-8")


def test_an_adaptive_plan_sends_the_input_as_an_image_on_a_real_classifier(tmp_path):
    """The plain "send a JPEG" baseline as one of an adaptive plan's cuts: the orientation classifier (a real Paddle
    export) on a board ten times slower than a RockPro64, rendered pages as calibration; webp:90 prices only the
    cut that sends the input, which is kept for the fast links, and the board alone below."""
    from tests.helpers import ORIENTATION, packaged_model

    _pages_and_a_slow_board(tmp_path, 6)
    plan = splitnn.partition(packaged_model(*ORIENTATION[:2]), tmp_path / "ad", input_shapes="x:1x3x224x224",
                             device=str(tmp_path / "slow.toml"), link="4g", ort_format=False,
                             calibration=tmp_path / "pages", preprocess="imagenet", adaptive=True,
                             bandwidth_range="0.1Mbit-100Mbit", codec="webp:90")
    kept = plan.to_dict()["kept"]
    (image,) = [k for k in kept if k.get("codec") is not None]
    # (Where exactly it hands over to the other cuts moves with the encode time measured here, on a busy runner
    # 25 to 60 Mbit/s: not asserted; the run below stays inside the interval the plan gives it.)
    assert image["cut"]["tensors"] == ["x"] and image["codec"]["name"] == "webp:90"
    assert image["low_bps"] < image["high_bps"]
    assert image["codec"]["agreement"] == 1.0 and image["codec"]["raw_bytes"] / image["codec"]["coded_bytes"] > 20
    assert any(not k["cut"]["tensors"] for k in kept)  # the board alone, for the slow links
    inside = math.sqrt(image["low_bps"] * image["high_bps"]) / 1e6  # where the plan sends the input as WebP
    (tmp_path / "fast.csv").write_text(f"time_s,mbps\n0,{inside:.3f}\n")
    report = splitnn.run_bench(tmp_path / "ad", trace=tmp_path / "fast.csv", requests=4).to_dict()
    assert report["answered_remote"] == 4 and report["errors"] == 0 and report["outputs_match"] is True
    assert report["requests_per_cut"].get(str(image["cut"]["id"]), 0) >= 1  # the input went as a WebP file


def test_an_adaptive_plan_answers_in_the_reply_codec_on_a_real_detector(tmp_path):
    """reply_codec on an adaptive plan: the PP-OCRv4 detector (a real Paddle export) on a board ten times slower
    than a RockPro64 returns a 409.7 kB probability map; every cut that sends is priced with it coming back lossless
    (exact), the server answers every cut in it, and the adaptive device decodes it."""
    from tests.helpers import DET_MODEL, rapidocr_model

    _pages_and_a_slow_board(tmp_path, 4)
    common = dict(input_shapes="x:1x3x320x320", device=str(tmp_path / "slow.toml"), link="4g", ort_format=False,
                  calibration=tmp_path / "pages", preprocess="imagenet", adaptive=True,
                  bandwidth_range="0.1Mbit-100Mbit")
    plans = {reply: splitnn.partition(rapidocr_model(DET_MODEL), tmp_path / reply, **common,
                                      reply_codec=reply).to_dict() for reply in ("none", "lossless")}
    coded = plans["lossless"]["reply_codec"]
    assert plans["none"].get("reply_codec") is None
    assert coded["name"] == "lossless" and coded["max_abs_err"] == 0.0 and coded["raw_bytes"] / coded["coded_bytes"] > 5
    # Every cut that sends carries fewer bits with its answer coded, so a sending cut takes over at a lower rate.
    lowest = {name: min(k["low_bps"] for k in plan["kept"] if k["cut"]["tensors"]) for name, plan in plans.items()}
    assert lowest["lossless"] < lowest["none"]
    sending = max((k for k in plans["lossless"]["kept"] if k["cut"]["tensors"]), key=lambda k: k["high_bps"])
    (tmp_path / "fast.csv").write_text(f"time_s,mbps\n0,{math.sqrt(sending['low_bps'] * sending['high_bps']) / 1e6:.3f}\n")
    report = splitnn.run_bench(tmp_path / "lossless", trace=tmp_path / "fast.csv", requests=3).to_dict()
    assert report["answered_remote"] == 3 and report["errors"] == 0 and report["outputs_match"] is True

"""--codec auto: the cut and the codec chosen together, on measured bytes, within the output-change bound."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical.codec_check import OutputChangeLimit, default_limit
from splitnn.onnxsplit.vertical.codec_planning import plan_cut_and_codec
from splitnn.onnxsplit.vertical.planning import plain_request_bytes, plan_split


@pytest.fixture(scope="module")
def slow_board_plan(sample_path):
    """AlexNet on a board 20 times slower than a RockPro64, over 4G: sending a mid-network tensor pays, and its
    bytes decide by how much."""
    board = load_device("rockpro64")
    slow = replace(board, name="slow-board", macs_per_s={k: v / 20 for k, v in board.macs_per_s.items()})
    analysis = analyze(load_graph(sample_path("alexnet", 96)))
    (name,) = analysis.graph.inputs
    rng = np.random.default_rng(0)
    inputs = [{name: rng.random(analysis.graph.info(name).shape, dtype=np.float32)} for _ in range(6)]
    return analysis, plan_split(analysis, slow, load_device("cloud-cpu"), load_link("4g")), inputs


def test_auto_picks_the_fastest_pair_that_keeps_the_outputs(slow_board_plan):
    analysis, plan, inputs = slow_board_plan
    assert default_limit(analysis.graph) == OutputChangeLimit("agreement", 0.99)  # a classifier output
    chosen = plan_cut_and_codec(analysis, plan, inputs, OutputChangeLimit("relerr", 0.05), calibrated=True)
    trials = chosen.trials
    assert [t.total_s for t in trials] == sorted(t.total_s for t in trials)
    first = next(i for i, t in enumerate(trials) if t.verdict.startswith("chosen"))
    assert all(t.verdict.startswith("ruled out") for t in trials[:first])
    assert all(t.verdict.startswith(("not checked", "not priced")) for t in trials[first + 1:])
    winner = trials[first]
    # Best first: a pair is priced only when it could beat what was priced before. Its floor (its cut's compute
    # and the round trip) bounds every priced pair from below, and each pair left unpriced has a floor past the
    # chosen pair's prediction, so pricing it could not have changed the choice.
    floors = {c.cut.id: c.predicted.device_s + c.predicted.server_s + plan.link.rtt_s for c in plan.candidates}
    priced = [t for t in trials if t.request_bytes is not None and t.tensors]
    assert priced and all(t.total_s >= floors[t.cut_id] for t in priced)
    unpriced = [t for t in trials if t.verdict.startswith("not priced")]
    assert unpriced and all(t.total_s == floors[t.cut_id] > winner.total_s for t in unpriced)
    assert all(t.request_bytes is None and t.throughput_fps is None for t in unpriced)
    assert (winner.cut_id, winner.codec) == (chosen.plan.chosen.cut.id, chosen.codec)
    assert chosen.codec != "none" and chosen.plan.chosen.cut.tensors  # on this board a coded cut wins...
    best_plain = min(c.predicted.total_s for c in plan.candidates if c.feasible)
    assert winner.total_s < best_plain  # ...over every cut sent as float32, by its measured bytes
    plain_same_cut = next(t for t in trials if t.cut_id == winner.cut_id and t.codec == "none")
    assert winner.total_s < plain_same_cut.total_s
    # Each pair keeps its request's bytes on the wire (the report's column): float32 as the plan prices it, and
    # the codec's measured bytes, fewer.
    assert plain_same_cut.request_bytes == plain_request_bytes(analysis, chosen.plan.chosen)
    assert 0 < winner.request_bytes < plain_same_cut.request_bytes
    assert all(t.request_bytes == 0 for t in trials if not t.tensors)


def test_a_bound_no_lossy_codec_meets_leaves_an_exact_pair(slow_board_plan):
    analysis, plan, inputs = slow_board_plan
    chosen = plan_cut_and_codec(analysis, plan, inputs, OutputChangeLimit("abserr", 0.0), calibrated=True)
    assert chosen.codec in ("none", "lossless")
    ruled_out = [t for t in chosen.trials if t.verdict.startswith("ruled out")]
    assert ruled_out and all("abserr" in t.verdict for t in ruled_out)  # each says what it reached


def test_every_pair_that_sends_is_priced_with_the_reply_codec(slow_board_plan):
    """--codec auto --reply-codec C: a pair's answer is priced at the plain answer's bytes over C's ratio on the
    model's outputs (int8: about a quarter of 1000 float32 scores), plus C's encode in the transfer and its decode
    as its own stage."""
    from splitnn.onnxsplit.vertical.codec_planning import _tensors_at, reply_on_outputs
    from splitnn.onnxsplit.vertical.planning import plain_reply_bytes, with_request_bytes

    analysis, plan, inputs = slow_board_plan
    limit = OutputChangeLimit("relerr", 0.05)
    reply = reply_on_outputs(analysis.graph, _tensors_at(analysis.graph, set(), inputs), "int8", (1.0, 1.0), limit,
                              plan.link.down_bps)
    assert reply is not None and reply.name == "int8" and 3.0 < reply.ratio < 4.0 and reply.inputs == len(inputs)
    sending = next(c for c in plan.candidates if c.feasible and c.cut.tensors)
    plain_down = plain_reply_bytes(analysis, sending)
    coded_down = int(plain_down / reply.ratio)
    before = with_request_bytes(analysis, plan, candidate=sending)
    after = with_request_bytes(analysis, plan, candidate=sending, down_bytes=coded_down, reply_s=(0.001, 0.002))
    assert before.transfer_s == pytest.approx(sending.predicted.transfer_s)  # plain by default
    # The answer's encode on the server is in the transfer; its decode on the board is the decode stage.
    assert before.transfer_s - after.transfer_s == pytest.approx((plain_down - coded_down) * 8 / plan.link.down_bps
                                                                 - 0.001)
    assert after.decode_s == pytest.approx(0.002) and after.total_s == pytest.approx(
        before.total_s - (before.transfer_s - after.transfer_s) + 0.002)
    chosen = plan_cut_and_codec(analysis, plan, inputs, limit, True, reply_spec="auto")  # priced with auto's choice
    assert chosen.trials[0].verdict.startswith(("chosen", "ruled out"))


def test_finer_qualities_lie_between_the_chosen_rung_and_the_next_lower_one_ruled_out():
    from splitnn.onnxsplit.artifacts.plan_file import CodecTrialRecord
    from splitnn.onnxsplit.vertical.codec_planning import QUALITY_STEP, finer_qualities

    def trial(codec: str, verdict: str) -> CodecTrialRecord:
        return CodecTrialRecord(0, ("x",), codec, 0.3, 3.0, verdict)

    tried = [trial("jpeg:70", "ruled out: relerr 0.07"), trial("webp:80:0", "ruled out: relerr 0.06"),
             trial("webp:80", "ruled out: relerr 0.06"), trial("webp:90:0", "chosen")]
    assert finer_qualities("webp:90:0", tried) == [f"webp:{q}:0" for q in range(81, 90)]  # its own effort's rung
    assert finer_qualities("webp:90", tried) == [f"webp:{q}" for q in range(81, 90)]
    assert finer_qualities("jpeg:80", tried) == [f"jpeg:{q}" for q in range(71, 80)]
    # No lower rung of its family ruled out: QUALITY_STEP below it.
    assert finer_qualities("jpeg:95", []) == [f"jpeg:{q}" for q in range(95 - QUALITY_STEP + 1, 95)]
    assert finer_qualities("png", tried) == [] and finer_qualities("int8+lossless", tried) == []


def test_auto_refines_the_image_quality_below_the_ladders_rungs(sample_path):
    """A board 100 times slower than a RockPro64 at 3G: the input as an image wins (at 3G a quality step's bytes
    outweigh the noise in its encode time). With a bound every image quality meets, auto goes below the ladder's
    lowest rung (jpeg:70) to the fastest quality, each to the unit; every pair predicted faster was checked and
    ruled out."""
    from PIL import Image

    from splitnn.onnxsplit.vertical.codec_planning import IMAGE_LADDER
    from tests.helpers import imagenet_input, photos

    board = load_device("rockpro64")
    slow = replace(board, name="slow-board", macs_per_s={k: v / 100 for k, v in board.macs_per_s.items()})
    analysis = analyze(load_graph(sample_path("alexnet", 96)))
    (name,) = analysis.graph.inputs
    inputs = [{name: imagenet_input(Image.open(path), 96)} for path in photos()[:6]]
    plan = plan_split(analysis, slow, load_device("cloud-cpu"), load_link("3g"))
    calls: list[tuple[str, int, int]] = []
    chosen = plan_cut_and_codec(analysis, plan, inputs, OutputChangeLimit("relerr", 10.0), calibrated=True,
                                progress=lambda *call: calls.append(call))
    # The progress a partition shows: the tensor codecs' pairs priced (out of all of them: the input's images and
    # the plain pairs are priced before), the pairs checked, and the finer qualities.
    priced = [c for c in calls if c[0] == "pricing pairs"]
    coded = [t for t in chosen.trials if t.tensors and t.codec != "none" and not t.codec.startswith(("jpeg", "webp", "png"))]
    assert priced and {c[2] for c in priced} == {len(coded)}
    assert priced[-1][1] == len([t for t in coded if not t.verdict.startswith("not priced")])
    assert [c[0] for c in calls if c[0] != "pricing pairs"][:1] == ["checking pairs"]
    assert any(c[0] == "finer qualities" for c in calls)
    assert chosen.plan.chosen.cut.id == analysis.cuts[0].id and chosen.codec.startswith(("jpeg:", "webp:"))
    assert chosen.codec not in IMAGE_LADDER  # a quality between the rungs
    fmt, quality = chosen.codec.split(":")[:2]
    lowest_rung = min(int(c.split(":")[1]) for c in IMAGE_LADDER if c.startswith(f"{fmt}:") and c.count(":") ==
                      chosen.codec.count(":"))
    assert int(quality) < lowest_rung
    trials = chosen.trials
    assert [t.total_s for t in trials] == sorted(t.total_s for t in trials)
    first = next(i for i, t in enumerate(trials) if t.verdict == "chosen")
    assert trials[first].codec == chosen.codec
    assert all(t.verdict.startswith("ruled out") for t in trials[:first])
    assert any(t.verdict == "within the limit; a finer quality is faster" for t in trials[first + 1:])

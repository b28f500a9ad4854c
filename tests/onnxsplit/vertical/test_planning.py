"""How the chosen cut responds to the link, the device and the constraints."""
from __future__ import annotations

import dataclasses

import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical.planning import Constraints, plan_split


@pytest.fixture(scope="module")
def vgg(sample_path):
    return analyze(load_graph(sample_path("vgg16")))


def _wire(analysis, names) -> int:
    """The bytes a frame carrying tensors `names` takes on the wire."""
    from splitnn.cost_models.wire_bytes import frame_overhead_bytes

    infos = [analysis.graph.info(n) for n in names]
    return sum(i.nbytes for i in infos) + frame_overhead_bytes([(n, i.shape, i.dtype) for n, i in zip(names, infos)])


def test_cut_moves_earlier_as_bandwidth_grows(vgg):
    board, cloud = load_device("rockpro64"), load_device("cloud-cpu")
    chosen = {}
    for name, bps, rtt in (("cat1", 0.13e6, 0.1), ("4g", 5.85e6, 0.05), ("fast", 1e9, 0.001)):
        plan = plan_split(vgg, board, cloud, load_link(None, bps, rtt), "latency")
        chosen[name] = plan.chosen.cut.id
        assert plan.chosen.predicted.total_s == min(c.predicted.total_s for c in plan.candidates if c.feasible)
    last = len(vgg.cuts) - 1
    assert chosen["cat1"] == last  # 0.13 Mbit/s: nothing is worth sending
    assert chosen["fast"] == 0  # fast link, slow board: send the input
    assert chosen["cat1"] >= chosen["4g"] >= chosen["fast"]


def test_objectives_pick_their_own_best(vgg):
    board, cloud, link = load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g")
    throughput = plan_split(vgg, board, cloud, link, "throughput")
    energy = plan_split(vgg, board, cloud, link, "energy")
    assert throughput.chosen.predicted.throughput_fps == max(c.predicted.throughput_fps for c in throughput.candidates)
    assert energy.chosen.predicted.energy_j == min(c.predicted.energy_j for c in energy.candidates)
    # The stages of the prediction add up.
    p = throughput.chosen.predicted
    assert p.total_s == pytest.approx(p.device_s + p.encode_s + p.transfer_s + p.server_s)


def test_memory_constraint_rules_out_cuts(vgg):
    board = load_device("rockpro64")
    small = dataclasses.replace(board, ram_bytes=250_000_000)  # 200 MB usable: the classifier's weights do not fit
    plan = plan_split(vgg, small, load_device("cloud-cpu"), load_link("cat1"), "latency")
    ruled_out = [c for c in plan.candidates if not c.feasible]
    assert ruled_out and all(c.device_memory_bytes > 200_000_000 for c in ruled_out)
    assert all(c.device_memory_bytes <= 200_000_000 for c in plan.candidates if c.feasible)
    assert plan.chosen.feasible and plan.chosen.cut.id < len(vgg.cuts) - 1


def test_no_feasible_cut_names_the_constraint(vgg):
    tiny = dataclasses.replace(load_device("rockpro64"), ram_bytes=100_000)
    with pytest.raises(SplitnnError, match=r"no cut is feasible: device memory rules out 38 cuts \(cuts 0-37\)"):
        plan_split(vgg, tiny, load_device("cloud-cpu"), load_link("4g"))


def test_share_and_transfer_limits(vgg):
    board, cloud, link = load_device("rockpro64"), load_device("cloud-cpu"), load_link("cat1")
    limits = Constraints(device_memory_bytes=board.usable_ram_bytes, max_device_share=0.5, max_transfer_bytes=1_000_000)
    plan = plan_split(vgg, board, cloud, link, "latency", limits)
    assert plan.chosen.cut.device_macs <= 0.5 * vgg.totals.macs and plan.chosen.cut.bytes <= 1_000_000


def test_forced_cut(vgg):
    board, cloud, link = load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g")
    plan = plan_split(vgg, board, cloud, link, forced_tensors=("maxpool3_out",))
    assert plan.forced and plan.chosen.cut.tensors == ("maxpool3_out",)
    with pytest.raises(SplitnnError, match="no cut sends exactly"):
        plan_split(vgg, board, cloud, link, forced_tensors=("nonsense",))


def test_transfer_counts_the_reply_over_the_downlink(vgg):
    board, cloud = load_device("rockpro64"), load_device("cloud-cpu")
    link = dataclasses.replace(load_link("4g"), downlink_bps=1e6)
    plan = plan_split(vgg, board, cloud, link, "latency")
    first, last = plan.candidates[0], plan.candidates[-1]
    assert first.cut.reply_bytes == 1000 * 4  # VGG-16's 1000 float scores come back
    up, down = _wire(vgg, first.cut.tensors), _wire(vgg, vgg.graph.outputs)  # the tensors and their frames
    assert up - first.cut.bytes == 36 + 2 + 2 + len("input") + 1 + len("none") + 4 + 128 and down - 4000 < 200
    expected = up * 8 / 5.85e6 + down * 8 / 1e6 + link.rtt_s
    assert first.predicted.transfer_s == pytest.approx(expected, rel=1e-12)
    assert last.cut.reply_bytes == 0 and last.predicted.transfer_s == 0  # all on the device: nothing moves


def test_throughput_is_the_slowest_of_four_pipelined_stages_and_ignores_the_round_trip(vgg):
    """The throughput objective's model is the stream's: device, uplink, server and downlink each work on their
    own frame, so the slowest sets the rate; the round trip adds latency, not a period."""
    board, cloud = load_device("rockpro64"), load_device("cloud-cpu")
    near = dataclasses.replace(load_link("4g"), rtt_s=0.001, downlink_bps=2e6)
    far = dataclasses.replace(near, rtt_s=0.5)
    for a, b in zip(plan_split(vgg, board, cloud, near, "throughput").candidates,
                    plan_split(vgg, board, cloud, far, "throughput").candidates):
        p, cut = a.predicted, a.cut
        replies = [o for o in vgg.graph.outputs if cut.reply_bytes]  # VGG-16's one output, when the server makes it
        up, down = ((_wire(vgg, cut.tensors) * 8 / near.uplink_bps, _wire(vgg, replies) * 8 / 2e6) if cut.tensors
                    else (0.0, 0.0))
        assert p.throughput_fps == pytest.approx(1 / max(p.device_s + p.encode_s, up, p.server_s, down), rel=1e-12)
        assert b.predicted.throughput_fps == p.throughput_fps
        if cut.tensors:
            assert b.predicted.total_s == pytest.approx(p.total_s + 0.499, rel=1e-9)


def test_a_forced_tensor_that_crosses_only_with_others_names_its_cut(sample_path):
    """issue 30, item 9: `--cut conv2_out` on ResNet-18, whose conv2_out crosses only beside the skip connection's
    maxpool1_out, listed single-tensor cuts; it names the cut that holds it, all its tensors, and the --cut for it."""
    analysis = analyze(load_graph(sample_path("resnet18", 64)))
    holding = min((c for c in analysis.cuts if "conv2_out" in c.tensors), key=lambda c: (len(c.tensors), c.id))
    assert len(holding.tensors) > 1
    with pytest.raises(SplitnnError) as refused:
        plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                   forced_tensors=("conv2_out",))
    message = str(refused.value)
    assert message.startswith("no cut sends exactly conv2_out: it crosses only with other tensors: "
                              f"cut {holding.id} sends {', '.join(holding.tensors)} "
                              f"(--cut {','.join(holding.tensors)})"), message
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"),
                      forced_tensors=tuple(holding.tensors))  # what it says to write is a cut
    assert plan.chosen.cut.id == holding.id

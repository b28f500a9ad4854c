"""The device's bandwidth estimate follows the link, and the cut it picks switches without flapping."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from splitnn.onnxsplit.runtime.bandwidth import BandwidthEstimator, CutChooser, PartScales, PartSpeed
from splitnn.onnxsplit.vertical.link_range import LatencyLine


def _request(estimator, bps, at, up=60_000, down=4_000, rtt=0.05):
    """One request over a link of `bps` (both ways): its transfer time as the device measures it."""
    estimator.observe(up, down, rtt + 8 * (up + down) / bps, at)


def test_the_estimate_follows_a_change_within_two_seconds():
    estimator = BandwidthEstimator(rtt_s=0.05)
    assert estimator.estimate(0.0).bps is None and estimator.estimate(0.0).stale
    at = 0.0
    for _ in range(20):  # 18 Mbit/s, a request every 0.2 s
        at += 0.2
        _request(estimator, 18e6, at)
    assert estimator.estimate(at).bps == pytest.approx(18e6, rel=1e-6)
    changed = at
    while at < changed + 2.0:  # the link drops to 1 Mbit/s
        at += 0.2
        _request(estimator, 1e6, at)
    estimate = estimator.estimate(at)
    assert abs(estimate.bps / 1e6 - 1) < 0.2  # within 20%, 2 s after the change
    assert not estimate.stale and estimator.estimate(at + 6).stale


def test_noise_is_smoothed_and_one_outlier_does_not_move_the_estimate_far():
    estimator = BandwidthEstimator(rtt_s=0.05)
    at = 0.0
    for i in range(40):
        at += 0.2
        _request(estimator, 8e6 if i % 2 else 12e6, at)
    steady = estimator.estimate(at)
    assert 8e6 < steady.bps < 12e6 and steady.spread > 1.05
    _request(estimator, 0.5e6, at + 0.2)  # one slow request (a retransmission, say)
    assert estimator.estimate(at + 0.2).bps > 0.5 * steady.bps


def test_a_failed_request_pulls_the_estimate_down():
    estimator = BandwidthEstimator(rtt_s=0.05)
    _request(estimator, 18e6, 1.0)
    estimator.observe_failure(60_000, waited_s=2.05, at=3.0)  # no answer in 2 s: at most 0.24 Mbit/s
    assert estimator.estimate(3.0).bps == pytest.approx(60_000 * 8 / 2.0)
    estimator.observe_failure(60_000, waited_s=0.04, at=3.1)  # shorter than the round trip: says nothing
    assert estimator.estimate(3.1).bps == pytest.approx(60_000 * 8 / 2.0)


def _line(cut_id, fixed_s, wire_bits):
    return LatencyLine(SimpleNamespace(cut=SimpleNamespace(id=cut_id)), fixed_s, wire_bits)


def test_the_choice_switches_with_hysteresis():
    device_only, early = _line(9, 0.600, 0.0), _line(3, 0.100, 8 * 100_000)  # equal at 1.6 Mbit/s
    chooser = CutChooser([device_only, early], hysteresis=0.1)
    assert chooser.choose(20e6) is early and chooser.switches == 0
    assert chooser.choose(1.5e6) is early  # device_only is better, but by less than 10%
    assert chooser.choose(1.7e6) is early and chooser.choose(1.5e6) is early  # no flapping
    assert chooser.choose(1.0e6) is device_only and chooser.switches == 1  # 0.9 s against 0.6 s: switch
    assert chooser.choose(1.7e6) is device_only  # back near the crossing: kept
    assert chooser.choose(10e6) is early and chooser.switches == 2


def test_a_link_too_fast_to_time_gives_a_floor():
    """A probe lost in the round trip's jitter (loopback, a LAN) says only that the rate is at least so much."""
    estimator = BandwidthEstimator(rtt_s=0.001)
    estimator.observe_at_least(100e6, at=0.0)
    assert estimator.estimate(0.5).bps == pytest.approx(100e6) and not estimator.estimate(0.5).stale
    estimator.observe_at_least(50e6, at=1.0)  # a lower floor does not pull the estimate down
    assert estimator.estimate(1.0).bps == pytest.approx(100e6)


def test_a_round_trip_slowed_by_a_thin_link_does_not_make_the_rate_look_fast():
    """The round trip is the least measured in the last RTT_WINDOW_S: a one-byte probe's frame that took 0.2 s on a
    0.01 Mbit/s link would otherwise be taken out of every later sample."""
    from splitnn.onnxsplit.runtime.bandwidth import RTT_WINDOW_S

    estimator = BandwidthEstimator(rtt_s=0.05)
    estimator.observe_round_trip(0.05, at=0.0)
    estimator.observe_round_trip(0.25, at=1.0)  # in a tunnel
    assert estimator.rtt_s == 0.05
    _request(estimator, 6e6, at=1.5)  # the link is back: the sample is right, not 2.5 times too fast
    assert estimator.estimate(1.5).bps == pytest.approx(6e6, rel=1e-6)
    estimator.observe_round_trip(0.08, at=RTT_WINDOW_S + 1.0)  # a longer path for good: the old minimum expires
    assert estimator.rtt_s == 0.08


def _priced(cut_id, fixed_s, wire_bits, server_s, device_s=0.0):
    """A kept cut's line whose server and device parts were planned to take `server_s` and `device_s`."""
    predicted = SimpleNamespace(server_s=server_s, device_s=device_s)
    return LatencyLine(SimpleNamespace(cut=SimpleNamespace(id=cut_id), predicted=predicted), fixed_s, wire_bits)


def test_the_server_speed_is_learned_from_the_times_its_answers_carry():
    """issue 30, item 11: the plan priced one server and another answers. The factor on the planned server seconds
    comes from the first answer, is smoothed like the rate, follows a change of server after two answers, stands in
    for a cut not answered yet, and fades toward the plan once no answer comes."""
    from splitnn.onnxsplit.runtime.bandwidth import FORGET_HALF_LIFE_S, PartSpeed

    speed = PartSpeed()
    assert speed.scale(0, 0.0) == 1.0  # nothing learned: the plan's server
    speed.observe(0, planned_s=0.05, measured_s=0.40, at=1.0)
    assert speed.scale(0, 1.0) == pytest.approx(8.0) and speed.scale(31, 1.0) == pytest.approx(8.0)
    at = 1.0
    for i in range(20):  # noisy answers around 8x
        at += 0.6
        speed.observe(0, 0.05, 0.05 * (7.0 if i % 2 else 9.0), at)
    assert 7.0 < speed.scale(0, at) < 9.0
    speed.observe(31, planned_s=0.01, measured_s=0.02, at=at)  # the other cut's own answer: its own factor
    assert speed.scale(31, at) == pytest.approx(2.0) and speed.scale(0, at) > 6.5
    speed.observe(0, 0.05, 0.05, at + 0.6)  # one fast answer is not yet a new server...
    assert speed.scale(0, at + 0.6) > 4.0
    speed.observe(0, 0.05, 0.05, at + 1.2)  # ...two in a row are
    assert speed.scale(0, at + 1.2) == pytest.approx(1.0)
    speed.observe(5, planned_s=1e-5, measured_s=1e-3, at=at + 1.2)  # next to no planned time: its factor alone
    assert speed.scale(5, at + 1.2) == pytest.approx(100.0) and speed.scale(7, at + 1.2) < 3.0
    late = at + 1.2 + 4 * FORGET_HALF_LIFE_S  # no answer for a long while: back near the plan
    assert speed.scale(0, late) < 1.2 and speed.scale(31, late) < 1.2
    speed.reset()
    assert speed.scale(0, late) == 1.0


def test_the_choice_ranks_the_cuts_with_the_learned_server_time():
    """At 30 Mbit/s the plan's server makes sending the input best; a server twenty times slower than planned
    makes the device alone best, and the predicted latency says so."""
    device_only = _priced(37, 0.638, 0.0, 0.0)
    middle = _priced(31, 0.519, 0.84e6, 0.0084)
    input_cut = _priced(0, 0.100, 4.85e6, 0.050)
    chooser = CutChooser([device_only, middle, input_cut])
    assert chooser.choose(30e6) is input_cut
    assert CutChooser.predicted_s(input_cut, 30e6, scales=PartScales(server=8.0)) == pytest.approx(0.100 + 4.85 / 30 + 7 * 0.050)
    slow = {0: 20.0, 31: 20.0}
    assert chooser.choose(30e6, scales=lambda line: PartScales(server=slow.get(line.candidate.cut.id, 1.0))) is device_only
    assert chooser.switches == 1


def test_the_device_factor_is_learned_per_cut_and_ranks_the_cuts():
    """issue 30, item 11: on a busy board a sending cut's device side (its part, encoding, sockets) took 12% more
    than planned, and the device kept it, 7% slower than the board alone, since nothing learned the device's time.
    The cut's factor is learned from all of it; a cut not timed yet (the board alone, which does not pay for
    sending) takes the factor of the compute alone, at most 1 (so that it is timed once); both rank the cuts."""
    device_only = _priced(37, 0.638, 0.0, 0.0, device_s=0.638)
    middle = _priced(31, 0.519 + 0.0084 + 0.05, 0.84e6, 0.0084, device_s=0.519)
    chooser = CutChooser([device_only, middle])
    assert chooser.choose(30e6) is middle  # 0.605 s against 0.638 s
    speed = PartSpeed(untried_at_most=1.0)
    speed.observe(31, planned_s=0.519, measured_s=1.12 * 0.519, at=1.0, common_s=0.99 * 0.519)  # compute: 0.99x
    assert speed.scale(31, 1.0) == pytest.approx(1.12) and speed.scale(37, 1.0) == pytest.approx(0.99)
    assert CutChooser.predicted_s(middle, 30e6, scales=PartScales(device=1.12)) == pytest.approx(
        0.519 * 1.12 + 0.0084 + 0.05 + 0.84 / 30)
    learned = lambda line: PartScales(device=speed.scale(line.candidate.cut.id, 1.0))  # noqa: E731
    # 0.667 s against 0.632 s: within the hysteresis, so taken after `patience` choices
    assert [chooser.choose(30e6, scales=learned) for _ in range(3)] == [middle, middle, device_only]

    speed.observe(31, planned_s=0.519, measured_s=1.2 * 0.519, at=2.0, common_s=1.2 * 0.519)  # a busier board
    assert speed.scale(37, 2.0) == 1.0  # a cut not timed yet: tried at its plan's time, not left untried for good
    speed.observe(37, planned_s=0.638, measured_s=1.1 * 0.638, at=3.0)
    assert speed.scale(37, 3.0) == pytest.approx(1.1)

def test_a_cut_that_cannot_answer_in_time_is_no_choice():
    """issue 30, item 11: under a deadline, the device chose the fastest cut and then sent nothing there when it
    could not answer in time, answering alone although another cut could. Only the usable cuts are ranked, and a
    current cut that becomes unusable is left at once, hysteresis or not."""
    device_only = _priced(37, 0.638, 0.0, 0.0)
    middle = _priced(31, 0.519, 0.84e6, 0.0084)
    input_cut = _priced(0, 0.100, 4.85e6, 0.050)
    chooser = CutChooser([device_only, middle, input_cut])
    slow = {0: 6.0, 31: 6.0}
    scale = lambda line: PartScales(server=slow.get(line.candidate.cut.id, 1.0))  # noqa: E731
    assert chooser.choose(30e6, scales=scale) is input_cut  # 0.51 s against 0.59 s and 0.64 s
    in_time = lambda line: line is not input_cut  # noqa: E731  (the deadline leaves the input cut too little)
    assert chooser.choose(30e6, scales=scale, usable=in_time) is middle and chooser.switches == 1
    assert chooser.fastest(30e6, scales=scale) is input_cut
    assert chooser.choose(30e6, scales=scale, usable=lambda line: False) is input_cut  # none usable: all ranked


def test_a_cut_steadily_a_little_faster_is_taken_after_patience_choices():
    """Within the hysteresis margin, a cut predicted faster `patience` times in a row is taken; one whose lead
    comes and goes is not."""
    device_only, early = _line(9, 0.600, 0.0), _line(3, 0.100, 8 * 100_000)  # equal at 1.6 Mbit/s
    chooser = CutChooser([device_only, early], hysteresis=0.1, patience=3)
    assert chooser.choose(20e6) is early
    assert chooser.choose(1.5e6) is early and chooser.choose(1.5e6) is early  # device_only 5% faster: twice
    assert chooser.choose(1.5e6) is device_only and chooser.switches == 1  # the third time in a row
    flapping = CutChooser([device_only, early], hysteresis=0.1, patience=3)
    assert flapping.choose(20e6) is early
    for rate in (1.5e6, 1.5e6, 1.7e6, 1.5e6, 1.5e6, 1.7e6):  # the lead never lasts three choices
        assert flapping.choose(rate) is early
    assert flapping.switches == 0

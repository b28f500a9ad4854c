"""What the device knows of the link and the server while it runs: a bandwidth estimate from its own requests, the
server's speed from the times its answers carry, and the cut it picks from both (issue 13, items 2 and 3; issue 30,
item 11; measure/adaptive.py runs them).

The estimate is passive. Each answered request gives one sample: the bits
that crossed (up, and down in the link's ratio) over the time they took on the
wire, which is the transfer time (first byte sent to answer, minus the server's
compute, which the answer carries) minus the round trip. Samples are averaged
in log space (rates multiply; a fade from 20 to 0.2 Mbit/s is two steps of ten,
not one of 19.8) with a weight that decays with time, half-life `half_life_s`,
so an old rate fades out however few requests there were. A change of link
is not averaged in slowly: two samples in a row more than a factor of 1.5 off
the estimate, on the same side, start the average again from them (Edgent's
change point, in its simplest form). A request that
failed or timed out is a bound, not a sample: the rate was at most its bits
over the time waited, and an estimate above that is pulled down to it. An
estimate older than `stale_after_s` is reported stale (a probe or the planned
rate is then the better guess).

The server the plan priced may not be the one that answers (another
machine, or a loaded one), and the board may not be the one it priced either
(a busier one, or overheads the plan does not count: encoding, sockets).
Every answer carries the server's own compute time (runtime/wire.py's
`server_s`), and the rest of a request that is not on the wire is the
device's. `PartSpeed` learns from these a factor on the plan's seconds, one
for the server and one for the device, averaged as the rate is (in log space,
the same half-life, the same change point): one per cut, and one over every
cut whose planned time is at least SHARED_MIN_PLANNED_S, which a cut not
measured yet takes. A cut's own factor is learned from all of its part's
time; the shared one from the share that every cut would take alike: all of
the server's (a slower server is slower at every cut), the device's compute
only (what a sending cut adds on the device, encoding and sockets, the board
alone does not pay). The device's shared factor stands in for a cut not timed
yet at most at 1 (`untried_at_most`): compute times do not scale from one part
to another where a board is emulated (each part takes at least its planned
time) or where parts differ in kind, and a cut that the plan predicts faster
is then timed once rather than never. A factor with no new sample fades, half-life
FORGET_HALF_LIFE_S, a cut's toward the shared one and the shared one toward the
plan's (1), so that a part that got faster again is tried again in time.

The choice is the cut with the best predicted latency at the estimate (the
lines of vertical/link_range.py, each device and server time scaled by its
learned factor), among those the caller may use (under a deadline, those that can
answer in time), with hysteresis: the current cut is kept until another one is
predicted better by more than `hysteresis` (10%), or better at all in `patience`
(3) choices in a row (so a cut that is steadily a little faster is reached in a
few requests, while two nearly equal cuts whose estimates cross back and forth
do not take turns), or until it may no longer be used. Switching costs nothing
but the choice.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from splitnn.onnxsplit.vertical.link_range import LatencyLine, Priced

C = TypeVar("C", bound=Priced)  # what the lines are drawn for

JUMP = math.log(1.5)  # a sample this far off the estimate (a factor of 1.5) may be a new link
RTT_WINDOW_S = 12.0  # the round trip is the least measured over this window
FORGET_HALF_LIFE_S = 60.0  # a learned factor with no new sample fades with this half-life
# A cut whose planned time (of the part measured) is shorter than this teaches its own factor only: a part's
# fixed overhead per request, over next to no planned time, would give a factor no other cut has.
SHARED_MIN_PLANNED_S = 1e-3


@dataclass(frozen=True)
class Estimate:
    bps: float | None  # None: no sample yet
    spread: float  # one standard deviation of the samples, as a factor (1.25: +-25%)
    samples: int
    age_s: float  # since the last sample or bound
    stale: bool


class BandwidthEstimator:
    """The uplink rate, from the device's own requests (see the module doc)."""

    def __init__(self, rtt_s: float, down_over_up: float = 1.0, half_life_s: float = 2.0,
                 stale_after_s: float = 5.0) -> None:
        self.rtt_s, self.down_over_up = rtt_s, down_over_up
        self.half_life_s, self.stale_after_s = half_life_s, stale_after_s
        self._log_bps: float | None = None
        self._variance = 0.0
        self._samples = 0
        self._last_at: float | None = None
        self._pending_jump, self._jump_sample = 0, 0.0  # a first sample far off the estimate, waiting for a second
        self._round_trips: list[tuple[float, float]] = []  # (when, seconds) of the recent round-trip probes

    def _wire_bits(self, up_bytes: int, down_bytes: int) -> float:
        """The bits that crossed, in uplink bits (the reply's at the downlink's rate)."""
        return 8 * (up_bytes + down_bytes / self.down_over_up)

    def observe(self, up_bytes: int, down_bytes: int, transfer_s: float, at: float) -> None:
        """One answered request: its bytes each way and its transfer time (server compute already taken out)."""
        on_wire = transfer_s - self.rtt_s
        if on_wire <= 0 or up_bytes + down_bytes == 0:
            return  # all latency, no information on the rate
        sample = math.log(self._wire_bits(up_bytes, down_bytes) / on_wire)
        if self._log_bps is None or self._last_at is None:
            self._log_bps, self._variance = sample, 0.0
        else:
            deviation = sample - self._log_bps
            jump = 1 if deviation > JUMP else -1 if deviation < -JUMP else 0
            if jump and jump == self._pending_jump:  # the second sample in a row that far off: a new link
                self._log_bps, self._variance = (sample + self._jump_sample) / 2, (sample - self._jump_sample) ** 2 / 4
                jump = 0
            else:
                weight = 1 - 0.5 ** (max(at - self._last_at, 1e-3) / self.half_life_s)
                self._log_bps += weight * deviation
                self._variance = (1 - weight) * (self._variance + weight * deviation ** 2)
            self._pending_jump, self._jump_sample = jump, sample
        self._samples += 1
        self._last_at = at

    def observe_failure(self, up_bytes: int, waited_s: float, at: float) -> None:
        """A request with no answer after `waited_s`: the rate was at most its bits over that time."""
        if waited_s <= self.rtt_s or up_bytes == 0:
            return
        bound = math.log(self._wire_bits(up_bytes, 0) / (waited_s - self.rtt_s))
        if self._log_bps is None or self._log_bps > bound:
            self._log_bps = bound
        self._last_at = at

    def observe_at_least(self, bps: float, at: float) -> None:
        """The link carried a probe faster than its round trip lets this device time (a LAN, or loopback): the
        rate is at least `bps`, and an estimate below that is raised to it."""
        bound = math.log(bps)
        if self._log_bps is None or self._log_bps < bound:
            self._log_bps, self._variance = bound, 0.0
            self._samples += 1
        self._last_at = at

    def observe_round_trip(self, seconds: float, at: float) -> None:
        """A round trip that carried next to nothing (a tiny probe): the link's own delay, which the samples take
        out. The planned link's figure holds until one is measured; then it is the least of those measured in
        the last RTT_WINDOW_S (as TCP BBR keeps its minimum RTT): on a thin link even a tiny probe's frame takes
        time on the wire (150 bytes at 0.01 Mbit/s: 0.12 s), and an inflated round trip, taken out of the next
        samples, would make the rate look many times faster than it is."""
        self._round_trips = [(t, s) for t, s in self._round_trips if at - t <= RTT_WINDOW_S] + [(at, seconds)]
        self.rtt_s = min(s for _, s in self._round_trips)

    def estimate(self, now: float) -> Estimate:
        if self._log_bps is None or self._last_at is None:
            return Estimate(None, 1.0, 0, math.inf, True)
        age = now - self._last_at
        return Estimate(math.exp(self._log_bps), math.exp(math.sqrt(self._variance)), self._samples, age,
                        age > self.stale_after_s)


@dataclass
class _Factor:
    """One learned factor, in log space: its samples averaged as the rate's are (see the module doc)."""

    log: float
    at: float  # when the last sample came
    pending_jump: int = 0  # a sample far off the factor, waiting for a second one on the same side
    jump_sample: float = 0.0

    def add(self, sample: float, at: float, half_life_s: float) -> None:
        deviation = sample - self.log
        jump = 1 if deviation > JUMP else -1 if deviation < -JUMP else 0
        if jump and jump == self.pending_jump:  # the second sample in a row that far off: the server changed
            self.log, jump = (sample + self.jump_sample) / 2, 0
        else:
            self.log += (1 - 0.5 ** (max(at - self.at, 1e-3) / half_life_s)) * deviation
        self.pending_jump, self.jump_sample = jump, sample
        self.at = max(self.at, at)  # a late answer read aside may come in after a later one

    def value(self, now: float, fallback: float, forget_half_life_s: float) -> float:
        """The factor at `now`, faded toward `fallback` for the time since its last sample."""
        return fallback + 0.5 ** (max(now - self.at, 0.0) / forget_half_life_s) * (self.log - fallback)


@dataclass(frozen=True)
class PartScales:
    """The learned factors on one cut's planned device and server seconds (1: as planned)."""

    device: float = 1.0
    server: float = 1.0


class PartSpeed:
    """How many times its planned seconds a part (the server's, or the device's) takes, per cut, from the times
    measured; a factor over the cuts stands in for a cut not measured yet (see the module doc)."""

    def __init__(self, half_life_s: float = 2.0, forget_half_life_s: float = FORGET_HALF_LIFE_S,
                 untried_at_most: float = math.inf) -> None:
        self.half_life_s, self.forget_half_life_s = half_life_s, forget_half_life_s
        self.untried_at_most = untried_at_most  # the most a cut not measured yet takes of the shared factor
        self._cuts: dict[int, _Factor] = {}
        self._shared: _Factor | None = None
        self.samples = 0

    def observe(self, cut_id: int, planned_s: float, measured_s: float, at: float,
                common_s: float | None = None) -> None:
        """One request at `cut_id`, whose part was planned to take `planned_s` and took `measured_s`, of which
        `common_s` (all of it by default) is what any cut's part would take alike."""
        if planned_s <= 0 or measured_s <= 0:
            return
        sample = math.log(measured_s / planned_s)
        own = self._cuts.get(cut_id)
        if own is None:
            self._cuts[cut_id] = _Factor(sample, at)
        else:
            own.add(sample, at, self.half_life_s)
        common = sample if common_s is None else math.log(max(common_s, 1e-9) / planned_s)
        if planned_s >= SHARED_MIN_PLANNED_S:
            if self._shared is None:
                self._shared = _Factor(common, at)
            else:
                self._shared.add(common, at, self.half_life_s)
        self.samples += 1

    def scale(self, cut_id: int, now: float) -> float:
        """The factor on `cut_id`'s planned seconds at `now` (1 before any sample)."""
        shared = self._shared.value(now, 0.0, self.forget_half_life_s) if self._shared is not None else 0.0
        own = self._cuts.get(cut_id)
        if own is None:
            return min(math.exp(shared), self.untried_at_most)
        return math.exp(own.value(now, shared, self.forget_half_life_s))

    def reset(self) -> None:
        """Another machine: nothing learned holds."""
        self._cuts.clear()
        self._shared = None
        self.samples = 0


class CutChooser(Generic[C]):
    """The cut with the best predicted latency at a rate, with hysteresis (see the module doc)."""

    def __init__(self, lines: Sequence[LatencyLine[C]], hysteresis: float = 0.1, patience: int = 3) -> None:
        if not lines:
            raise ValueError("no cut to choose from")
        self.lines, self.hysteresis, self.patience = list(lines), hysteresis, patience
        self.current: LatencyLine[C] | None = None
        self.switches = 0
        self._leader: LatencyLine[C] | None = None  # the cut predicted better than the current one in the last choices
        self._leads = 0  # in how many choices in a row

    def choose(self, uplink_bps: float, rtt_change_s: float = 0.0,
               scales: Callable[[LatencyLine[C]], PartScales] | None = None,
               usable: Callable[[LatencyLine[C]], bool] | None = None) -> LatencyLine[C]:
        """The cut to use at `uplink_bps`, the round trip `rtt_change_s` longer than the lines were drawn for, each
        line's device and server seconds `scales(line)` times what they were drawn with; among the lines `usable` keeps
        (a deadline's: those that can answer in time), all of them where it keeps none. A current cut that is
        not usable is left at once."""
        lines = [line for line in self.lines if usable is None or usable(line)] or self.lines
        best = self.fastest(uplink_bps, rtt_change_s, scales, lines)
        seconds = self._seconds(uplink_bps, rtt_change_s, scales)
        if self.current is None:
            self.current = best
        elif best is not self.current and (all(line is not self.current for line in lines)
                                           or seconds(self.current) > (1 + self.hysteresis) * seconds(best)
                                           or self._lead(best, seconds(best) < seconds(self.current))):
            self.current, self._leader, self._leads = best, None, 0
            self.switches += 1
        elif best is self.current:
            self._leader, self._leads = None, 0
        return self.current

    def _lead(self, best: LatencyLine[C], faster: bool) -> bool:
        """Count one more choice in a row where `best` was predicted faster than the current cut; True once it has
        been for `patience` choices."""
        self._leads = self._leads + 1 if faster and best is self._leader else int(faster)
        self._leader = best if faster else None
        return self._leads >= self.patience

    def fastest(self, uplink_bps: float, rtt_change_s: float = 0.0,
                scales: Callable[[LatencyLine[C]], PartScales] | None = None,
                lines: Sequence[LatencyLine[C]] | None = None) -> LatencyLine[C]:
        """The line of `lines` (all by default) predicted fastest, as `choose` predicts them, without hysteresis."""
        seconds = self._seconds(uplink_bps, rtt_change_s, scales)
        return min(self.lines if lines is None else lines, key=lambda line: (seconds(line), line.wire_bits))

    def _seconds(self, uplink_bps: float, rtt_change_s: float,
                 scales: Callable[[LatencyLine[C]], PartScales] | None) -> Callable[[LatencyLine[C]], float]:
        def seconds(line: LatencyLine[C]) -> float:
            return self.predicted_s(line, uplink_bps, rtt_change_s, scales(line) if scales else PartScales())

        return seconds

    @staticmethod
    def predicted_s(line: LatencyLine[C], uplink_bps: float, rtt_change_s: float = 0.0,
                    scales: PartScales = PartScales()) -> float:
        """A line's latency at `uplink_bps`, its round trip (if it sends anything) `rtt_change_s` longer, its
        device's and server's seconds `scales` times the planned ones."""
        learned_s = 0.0
        if scales != PartScales():
            predicted = line.candidate.predicted
            learned_s = (scales.server - 1.0) * predicted.server_s + (scales.device - 1.0) * predicted.device_s
        return line.seconds(uplink_bps) + (rtt_change_s if line.wire_bits > 0 else 0.0) + learned_s

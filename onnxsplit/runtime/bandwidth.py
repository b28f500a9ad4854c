"""What the device knows of the link and the server while it runs: a bandwidth estimate from its own requests, the
server's speed from the times its answers carry, and the cut it picks from both (issue 13, items 2 and 3; issue 30,
item 11; bench/adaptive.py runs them).

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
machine, or a loaded one). Every answer carries the server's own compute time
(runtime/wire.py's `server_s`), and `ServerSpeed` learns from it a factor on
the plan's server seconds, averaged as the rate is (in log space, the same
half-life, the same change point): one per cut, and one over every cut whose
planned server time is at least SHARED_MIN_PLANNED_S, which a cut not answered
yet takes. A factor with no new sample fades, half-life FORGET_HALF_LIFE_S, a
cut's toward the shared one and the shared one toward the plan's (1), so that a
server that got faster again is tried again in time.

The choice is the cut with the best predicted latency at the estimate (the
lines of vertical/link_range.py, each server time scaled by its learned
factor), among those the caller may use (under a deadline, those that can
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

from splitnn.onnxsplit.vertical.link_range import LatencyLine

JUMP = math.log(1.5)  # a sample this far off the estimate (a factor of 1.5) may be a new link
RTT_WINDOW_S = 12.0  # the round trip is the least measured over this window
FORGET_HALF_LIFE_S = 60.0  # a learned server factor with no new sample fades with this half-life
# A cut whose planned server time is shorter than this teaches its own factor only: the server's fixed overhead
# per request, over next to no planned time, would give a factor no other cut has.
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


class ServerSpeed:
    """How many times its planned seconds the server takes, per cut, from the times its answers carry (see the
    module doc)."""

    def __init__(self, half_life_s: float = 2.0, forget_half_life_s: float = FORGET_HALF_LIFE_S) -> None:
        self.half_life_s, self.forget_half_life_s = half_life_s, forget_half_life_s
        self._cuts: dict[int, _Factor] = {}
        self._shared: _Factor | None = None
        self.samples = 0

    def observe(self, cut_id: int, planned_s: float, server_s: float, at: float) -> None:
        """One answer at `cut_id`, whose server part was planned to take `planned_s` and took `server_s`."""
        if planned_s <= 0 or server_s <= 0:
            return
        sample = math.log(server_s / planned_s)
        own = self._cuts.get(cut_id)
        if own is None:
            self._cuts[cut_id] = _Factor(sample, at)
        else:
            own.add(sample, at, self.half_life_s)
        if planned_s >= SHARED_MIN_PLANNED_S:
            if self._shared is None:
                self._shared = _Factor(sample, at)
            else:
                self._shared.add(sample, at, self.half_life_s)
        self.samples += 1

    def scale(self, cut_id: int, now: float) -> float:
        """The factor on `cut_id`'s planned server seconds at `now` (1 before any answer)."""
        shared = self._shared.value(now, 0.0, self.forget_half_life_s) if self._shared is not None else 0.0
        own = self._cuts.get(cut_id)
        return math.exp(own.value(now, shared, self.forget_half_life_s) if own is not None else shared)

    def reset(self) -> None:
        """Another server: nothing learned holds."""
        self._cuts.clear()
        self._shared = None
        self.samples = 0


class CutChooser:
    """The cut with the best predicted latency at a rate, with hysteresis (see the module doc)."""

    def __init__(self, lines: Sequence[LatencyLine], hysteresis: float = 0.1, patience: int = 3) -> None:
        if not lines:
            raise ValueError("no cut to choose from")
        self.lines, self.hysteresis, self.patience = list(lines), hysteresis, patience
        self.current: LatencyLine | None = None
        self.switches = 0
        self._leader: LatencyLine | None = None  # the cut predicted better than the current one in the last choices
        self._leads = 0  # in how many choices in a row

    def choose(self, uplink_bps: float, rtt_change_s: float = 0.0,
               server_scale: Callable[[LatencyLine], float] | None = None,
               usable: Callable[[LatencyLine], bool] | None = None) -> LatencyLine:
        """The cut to use at `uplink_bps`, the round trip `rtt_change_s` longer than the lines were drawn for, each
        line's server seconds `server_scale(line)` times what they were drawn with; among the lines `usable` keeps
        (a deadline's: those that can answer in time), all of them where it keeps none. A current cut that is
        not usable is left at once."""
        lines = [line for line in self.lines if usable is None or usable(line)] or self.lines
        best = self.fastest(uplink_bps, rtt_change_s, server_scale, lines)
        seconds = self._seconds(uplink_bps, rtt_change_s, server_scale)
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

    def _lead(self, best: LatencyLine, faster: bool) -> bool:
        """Count one more choice in a row where `best` was predicted faster than the current cut; True once it has
        been for `patience` choices."""
        self._leads = self._leads + 1 if faster and best is self._leader else int(faster)
        self._leader = best if faster else None
        return self._leads >= self.patience

    def fastest(self, uplink_bps: float, rtt_change_s: float = 0.0,
                server_scale: Callable[[LatencyLine], float] | None = None,
                lines: Sequence[LatencyLine] | None = None) -> LatencyLine:
        """The line of `lines` (all by default) predicted fastest, as `choose` predicts them, without hysteresis."""
        seconds = self._seconds(uplink_bps, rtt_change_s, server_scale)
        return min(self.lines if lines is None else lines, key=lambda line: (seconds(line), line.wire_bits))

    def _seconds(self, uplink_bps: float, rtt_change_s: float,
                 server_scale: Callable[[LatencyLine], float] | None) -> Callable[[LatencyLine], float]:
        def seconds(line: LatencyLine) -> float:
            return self.predicted_s(line, uplink_bps, rtt_change_s, server_scale(line) if server_scale else 1.0)

        return seconds

    @staticmethod
    def predicted_s(line: LatencyLine, uplink_bps: float, rtt_change_s: float = 0.0,
                    server_scale: float = 1.0) -> float:
        """A line's latency at `uplink_bps`, its round trip (if it sends anything) `rtt_change_s` longer, its
        server's seconds `server_scale` times the planned ones."""
        server_s = (server_scale - 1.0) * line.candidate.predicted.server_s if server_scale != 1.0 else 0.0
        return line.seconds(uplink_bps) + (rtt_change_s if line.wire_bits > 0 else 0.0) + server_s

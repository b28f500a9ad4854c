"""The device side of an adaptive plan (issue 13, items 2-4 and 8): `splitnn device` runs it against a real
server, and run-bench (measure/adaptive.py) runs it over an emulated link.

Per request: the estimate (runtime/bandwidth.py; the plan's typical rate while
there is no fresh one) picks a kept cut with hysteresis; the device graph runs
that cut's tensors, which go to the server graph of that cut (one server holds
them all and answers with the one that reads what came). Each answered request
updates the estimate; a failed one bounds it. While no estimate is fresh, a
probe between requests measures the round trip and the rate.

The server and the device are learned as the link is (issue 30, item 11):
each answer carries the server's compute time, the rest of the request off the
wire is the device's (its part, encoding and decoding; the part alone is what
every cut's device part would take alike), and the board alone is timed
whole; `PartSpeed` (runtime/bandwidth.py) scales each cut's planned
server and device seconds by what it learned, both in the choice and in the
deadline's test below. A request that timed out leaves its connection
to a reader aside (`_LateAnswers`), so that the server's time in its late
answer is learned too: a server too slow for the deadline would otherwise
never answer in time to say so. A failed request bounds the rate with the
server's learned time taken out of its wait.

With a deadline, every request is answered in time if the device can hold the
whole model: a cut whose predicted latency at the estimate's slow end (one
spread below it, the server at its learned speed) misses the deadline, or is
no faster there than the device alone, is not tried: the device chooses among
the other kept cuts, the board alone among them; and the server gets what the
deadline leaves once the device could still finish from the tensors it
computed. When it does not answer in that time, the device
finishes the request itself from those tensors, with that cut's server graph
(server/cut<ID>.onnx, the model from the cut to the outputs), and the
connection is dropped so that a late answer is never taken for a later
request's. A device that was given the device folder alone finishes from the
start instead, and its budget says so.

A server that refuses the device's token (runtime/device.Refused) is no slow link: the device stops asking it
(`refused` says why) and every request is an error, unless a deadline asked the device to answer alone when the
server cannot, where it answers alone.

`emulate_board`: run-bench's emulation of a slower board (as in measure/vertical.py): each part, and each
finish on the device, waits until the device profile's predicted time for it has passed.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import AdaptiveCutRecord, AdaptivePlanFile
from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.specs import warm_up
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.runtime.bandwidth import BandwidthEstimator, CutChooser, PartScales, PartSpeed
from splitnn.onnxsplit.runtime.device import DeviceClient, Refused
from splitnn.onnxsplit.runtime.wire import PROBE_TENSOR
from splitnn.onnxsplit.runtime.wire import RESPONSE, ConnectionClosed, ProtocolError, read_frame
from splitnn.onnxsplit.vertical.link_range import LatencyLine

# A probe is sized to take about PROBE_WIRE_S on the wire at the current estimate (long enough that the round
# trip does not swamp it, short enough to cost little), within these bounds, with an empty answer back.
PROBE_WIRE_S = 0.05
PROBE_BYTES = (512, 256 * 1024)
# While the device answers alone its requests say nothing of the link: a probe refreshes an estimate older than
# this, so that the estimate follows the link (and the device goes back to the server when it recovers).
PROBE_AFTER_S = 0.5
# The one-byte probe that measures the round trip is sent again when its figure is older than this.
RTT_PROBE_AFTER_S = 5.0
# Kept from the deadline for this host's own overheads (sockets, threads, a session's run): a share of it, and at
# least MIN_MARGIN_S, which a short deadline's share would not cover.
DEADLINE_MARGIN = 0.05
MIN_MARGIN_S = 0.01
# A timed-out request's connection is read aside for its answer this long at most, and this many at once (more are
# closed unread).
LATE_ANSWER_WAIT_S = 30.0
LATE_READERS = 4


@dataclass(frozen=True)
class HeldBack(Record):
    """Why a request sent nothing at the kept cut its estimate predicted fastest (the board alone answered it)."""

    cut_id: int  # the kept cut the estimate predicted fastest (with the server's learned speed)
    # "deadline": what the deadline leaves the link and the server at that cut is less than their predicted time;
    # "slower": the board alone is predicted to answer sooner; "timeout" (no deadline): the link and the server are
    # predicted to take longer than the timeout.
    reason: str
    budget_s: float  # what the deadline (or the timeout) leaves the link and the server once the device part ran
    needed_s: float  # the link and the server's predicted time, at the estimate's slow end


@dataclass(frozen=True)
class RequestPoint(Record):
    """One request: when, what the device believed and used, what the link really was, how it ended."""

    t_s: float
    estimate_bps: float | None
    true_bps: float | None  # the link's real rate at that moment, where known (an emulated trace); else None
    cut_id: int  # the kept cut that answered: the board alone's where nothing was sent (`held_back` says why)
    answered: str  # "remote", "local" or "error"
    e2e_s: float
    estimate_spread: float | None = None  # one standard deviation of the estimate's samples, as a factor
    held_back: HeldBack | None = None  # the cut the estimate chose, where nothing was sent there, and why


@dataclass(frozen=True)
class AnswerCounts:
    """How a run's requests ended: requests = remote + local + errors; `deadline_missed` among the answered."""

    remote: int
    local: int
    errors: int
    deadline_missed: int


class _LateAnswers:
    """Connections whose request timed out (runtime/device.DeviceClient.on_late), each read aside by a thread for
    its answer: the server's time that it carries, kept for the device to learn from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._times: list[tuple[int, float, float]] = []  # (cut id, the server's seconds, perf_counter at arrival)

    def watch(self, sock: socket.socket, request_id: int, cut_id: int) -> None:
        with self._lock:
            if len(self._open) >= LATE_READERS:
                sock.close()
                return
            self._open.add(sock)
        threading.Thread(target=self._read, args=(sock, request_id, cut_id), daemon=True).start()

    def _read(self, sock: socket.socket, request_id: int, cut_id: int) -> None:
        try:
            sock.settimeout(LATE_ANSWER_WAIT_S)
            frame = read_frame(sock)
            if frame.kind == RESPONSE and frame.request_id == request_id:
                with self._lock:
                    self._times.append((cut_id, frame.server_s, time.perf_counter()))
        except (OSError, ConnectionClosed, ProtocolError):
            pass  # no answer after all (closed, timed out, or the frame was cut when the request timed out)
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def take(self) -> list[tuple[int, float, float]]:
        """The late answers' (cut id, server seconds, perf_counter at arrival) come since the last call."""
        with self._lock:
            times, self._times = self._times, []
        return times

    def close(self) -> None:
        """Stop reading (a shutdown wakes a thread blocked in recv, which a close does not)."""
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._times = []


class _CutView:
    """One kept cut through the shared device graph (a DeviceSide for DeviceClient)."""

    def __init__(self, session: Any, plan: AdaptivePlanFile, kept: AdaptiveCutRecord) -> None:
        made = set(plan.device.outputs)
        self.session, self.inputs = session, list(plan.device.inputs)
        self.server_empty = kept.server_model is None
        self.sends = list(kept.server.inputs)
        self.keeps = [o for o in plan.outputs if o in made and (self.server_empty or o not in kept.server.outputs)]
        self.outputs = list(dict.fromkeys([*(t for t in kept.cut.tensors if t in made), *self.keeps]))
        # How this cut's tensors travel (partition --adaptive --codec; the server decodes by each tensor's name),
        # named per tensor: anything else, a probe, travels plain, at its own size.
        codec = kept.codec.codecs() if kept.codec is not None else Raw()
        self.codec = codec if isinstance(codec, Mapping) else {name: codec for name in self.sends}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.outputs:
            return {}  # this cut sends the model's input as it came
        return dict(zip(self.outputs, self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})))


class AdaptiveDevice:
    """An adaptive plan's device: estimate, choose, run, answer (remote or local), learn (see the module doc)."""

    def __init__(self, outdir: Path, plan: AdaptivePlanFile, server: tuple[str, int], *, deadline_s: float | None = None,
                 timeout_s: float = 30.0, hold_cut: int | None = None, emulate_board: bool = False,
                 true_rate: Callable[[float], float | None] | None = None, token: bytes | None = None,
                 tls: Any = None, name: str | None = None) -> None:
        self.outdir, self.plan, self.deadline_s, self.timeout_s = outdir, plan, deadline_s, timeout_s
        plan.check_artifacts(outdir, "device")
        self.hold_cut, self.emulate_board, self.true_rate = hold_cut, emulate_board, true_rate
        self.alone = next((k for k in plan.kept if k.server_model is None), None)
        if deadline_s is not None and self.alone is None:
            raise SplitnnError("--deadline needs a device that can answer alone, and this plan's device cannot hold "
                               "the whole model: drop --deadline")
        if deadline_s is not None and self.alone is not None and deadline_s < self.alone.predicted.device_s:
            raise SplitnnError(f"--deadline {deadline_s * 1e3:g} ms is shorter than the device's own fastest answer "
                               f"({self.alone.predicted.device_s * 1e3:.1f} ms predicted): give a longer deadline")
        held = [k for k in plan.kept if hold_cut in (None, k.cut.id)]
        if not held:
            raise SplitnnError(f"cut {hold_cut} is not one of the plan's kept cuts "
                               f"({', '.join(str(k.cut.id) for k in plan.kept)})")
        session = create_session(outdir / (plan.artifacts.device_ort or plan.artifacts.device_model), spin=False)
        warm_up(plan.codec_names)
        self.views = {k.cut.id: _CutView(session, plan, k) for k in plan.kept}
        self._kept = {k.cut.id: k for k in plan.kept}
        self.client = DeviceClient(self.views[held[0].cut.id], server, timeout_s=timeout_s,
                                   token=token, tls=tls, name=name)
        self.estimator = BandwidthEstimator(plan.link.rtt_s, plan.link.down_bps / plan.link.uplink_bps)
        self.server_speed = PartSpeed()  # the server's time against the plan's, from its answers
        self.device_speed = PartSpeed(untried_at_most=1.0)  # this device's time against the plan's
        self._late = _LateAnswers()
        self.chooser = CutChooser([LatencyLine(k, k.fixed_s, k.wire_bits) for k in held])
        # The kept cuts a late answer can be finished from here: decided once, from the folder's files.
        self._finishable = {k.cut.id for k in plan.kept if self._suffix_available(k)}
        self._suffixes: dict[int, Any] = {}  # cut id -> session of the cut's server graph, for finishing here
        if deadline_s is not None:
            self._load_suffixes()
        self.start = time.perf_counter()
        self.points: list[RequestPoint] = []
        self.last_outputs: dict[str, np.ndarray] = {}
        self.probes = 0
        self._rtt_at: float | None = None  # when the round trip was last measured
        self.refused: str | None = None  # why the server refused this device (its token), once it did

    def restart(self, server: tuple[str, int]) -> None:
        """Talk to `server` from now on, and count time from now: a bench starts the emulated link (whose trace
        runs from its start) once the device has loaded its sessions."""
        self.client.close()
        self._late.close()
        self.client.server = server
        self.server_speed.reset()
        self.start = time.perf_counter()

    def can_finish_from_tensors(self, kept: AdaptiveCutRecord) -> bool:
        """Whether a request sent at `kept` can be finished here from what was computed."""
        return kept.cut.id in self._finishable

    def _suffix_available(self, kept: AdaptiveCutRecord) -> bool:
        """The cut's server graph is in the folder, and the cut is past the model's inputs (at the inputs,
        finishing is starting over)."""
        computed = any(t not in self.plan.inputs for t in kept.cut.tensors)
        return computed and kept.server_model is not None and (self.outdir / kept.server_model).is_file()

    def _load_suffixes(self) -> None:
        """Open the graphs a late answer is finished with before the first request, so that a finish never
        waits for a session to load (each holds its part of the weights: memory the deadline costs)."""
        for kept in self.plan.kept:
            if kept.cut.id in self._finishable:
                self._suffixes[kept.cut.id] = create_session(self.outdir / str(kept.server_model), spin=False)

    def counts(self) -> AnswerCounts:
        """How the requests so far ended."""
        answered = [p for p in self.points if p.answered != "error"]
        deadline = self.deadline_s
        return AnswerCounts(sum(p.answered == "remote" for p in self.points), sum(p.answered == "local" for p in self.points),
                            len(self.points) - len(answered),
                            sum(1 for p in answered if deadline is not None and p.e2e_s > deadline))

    def request(self, feeds: dict[str, np.ndarray]) -> RequestPoint:
        """Answer one request, remotely or here; the point is also kept in `points`."""
        for cut_id, server_s, arrived in self._late.take():  # answers to requests that timed out
            self.server_speed.observe(cut_id, self._kept[cut_id].predicted.server_s, server_s, arrived - self.start)
        if self.refused is None and self.hold_cut is None and self._probe_due():
            try:
                self._probe()
            except Refused as exc:
                self._refuse(exc)
        t = self._now()
        estimate = self.estimator.estimate(t)
        fresh = estimate.bps is not None and not estimate.stale
        bps = self.plan.link.uplink_bps if estimate.bps is None or estimate.stale else estimate.bps
        rtt_change = self.estimator.rtt_s - self.plan.link.rtt_s  # the lines were drawn for the planned round trip
        # The learned speeds, on the line's planned seconds.
        def scales(line: LatencyLine[AdaptiveCutRecord]) -> PartScales:
            return self._scales(line.candidate.cut.id, t)

        def not_sent(line: LatencyLine[AdaptiveCutRecord]) -> HeldBack | None:
            """Why nothing may be sent at `line`'s cut; whether to try the server at all is decided at the
            estimate's slow end (one spread below it)."""
            kept = line.candidate
            if kept.server_model is None or self.refused is not None:
                return None
            slow_bps = bps / (estimate.spread if fresh else 1.0)
            return self._held_back(kept, self.chooser.predicted_s(line, slow_bps, rtt_change, scales(line)), t)

        # The fastest of the cuts that may be sent (and the board alone): a cut that cannot answer in time is no
        # choice, whatever its prediction.
        line = self.chooser.choose(bps, rtt_change, scales, usable=lambda line: not_sent(line) is None)
        kept = line.candidate
        begin = time.perf_counter()
        held_back = not_sent(line)  # where no cut may be sent and the board cannot answer alone
        if held_back is None and kept.server_model is None:  # the board alone: why, where a cut that sends is faster
            fastest = self.chooser.fastest(bps, rtt_change, scales)
            held_back = not_sent(fastest) if fastest is not line else None
        if self.refused is not None:  # an error, or answered alone where a deadline asked for that
            answered = self._from_the_start(feeds) if self.deadline_s is not None else "error"
        elif kept.server_model is None or held_back is not None:
            answered = self._from_the_start(feeds)
        else:
            answered = self._remote(kept, feeds, begin)
        used = self.alone if held_back is not None and self.alone is not None else kept
        point = RequestPoint(t, estimate.bps, self.true_rate(t) if self.true_rate else None, used.cut.id, answered,
                             time.perf_counter() - begin, estimate.spread if estimate.bps is not None else None,
                             held_back)
        self.points.append(point)
        return point

    def _scales(self, cut_id: int, now: float) -> PartScales:
        """The device's and the server's learned factors on `cut_id`'s planned seconds."""
        return PartScales(self.device_speed.scale(cut_id, now), self.server_speed.scale(cut_id, now))

    def _device_s(self, kept: AdaptiveCutRecord, now: float) -> float:
        """The device's predicted seconds for `kept`'s device part, at its learned speed."""
        return self.device_speed.scale(kept.cut.id, now) * kept.predicted.device_s

    def _held_back(self, kept: AdaptiveCutRecord, cautious_s: float, now: float) -> HeldBack | None:
        """Why not to send at `kept`, predicted to answer in `cautious_s` at the estimate's slow end (None: send).
        A held cut is always tried (the deadline still catches it). Under a deadline a try that fails costs the
        whole deadline, and on a moving link the estimate is often 30% high: the server must answer within what
        the deadline leaves, and faster than the device alone."""
        if self.hold_cut is not None:
            return None
        device_s = self._device_s(kept, now)
        budget_s, needed_s = self._remote_budget(kept, device_s), cautious_s - device_s
        alone = self.alone if self.deadline_s is not None else None  # what answers under a deadline
        if needed_s > budget_s:
            return HeldBack(kept.cut.id, "deadline" if alone is not None else "timeout", budget_s, needed_s)
        if alone is not None and cautious_s >= self._device_s(alone, now):
            return HeldBack(kept.cut.id, "slower", budget_s, needed_s)
        return None

    def close(self) -> None:
        self.client.close()
        self._late.close()

    @property
    def switches(self) -> int:
        return self.chooser.switches

    def _now(self) -> float:
        return time.perf_counter() - self.start

    def _rest_s(self, kept: AdaptiveCutRecord) -> float:
        """The board's predicted time to finish a request here once `kept`'s device part has run."""
        assert self.alone is not None
        done = kept.predicted.device_s if self.can_finish_from_tensors(kept) else 0.0
        return self.alone.predicted.device_s - done

    def _remote_budget(self, kept: AdaptiveCutRecord, spent_s: float | None = None) -> float:
        """How long the server may take to answer a request at `kept` once `spent_s` of it have passed (by
        default the device part's predicted time): what the deadline leaves once the device could still finish
        the request itself, less a margin."""
        if self.deadline_s is None or self.alone is None:
            return self.timeout_s
        spent = kept.predicted.device_s if spent_s is None else spent_s
        margin = max(self.deadline_s * DEADLINE_MARGIN, MIN_MARGIN_S)
        return self.deadline_s - margin - spent - self._rest_s(kept)

    def _probe_due(self) -> bool:
        estimate = self.estimator.estimate(self._now())
        using_link = bool(self.points) and self.points[-1].answered == "remote"
        return estimate.stale or (not using_link and estimate.age_s > PROBE_AFTER_S)

    def _probe(self) -> None:
        """No fresh estimate (the device answered alone for a while, or it just started): between requests, a
        one-byte probe measures the round trip, then a probe of about PROBE_WIRE_S at the current estimate
        measures the rate. Each waits a few times what it should take, and a probe that gets no answer in that
        time bounds the rate instead."""
        estimate = self.estimator.estimate(self._now())
        bps = estimate.bps or self.plan.link.uplink_bps
        size = int(min(max(bps * PROBE_WIRE_S / 8, PROBE_BYTES[0]), PROBE_BYTES[1]))
        if self._rtt_at is None or self._now() - self._rtt_at > RTT_PROBE_AFTER_S:
            self.client.set_timeout(min(self.timeout_s, 4 * self.estimator.rtt_s + 0.1))
            tiny = self.client.try_exchange({PROBE_TENSOR: np.zeros(1, np.uint8)})
            if tiny.ok:
                self.estimator.observe_round_trip(tiny.transfer_s, self._now())
                self._rtt_at = self._now()
            else:
                self.client.close()
        while True:
            self.client.set_timeout(min(self.timeout_s, self.estimator.rtt_s + 4 * 8 * size / bps + 0.1))
            result = self.client.try_exchange({PROBE_TENSOR: np.zeros(size, np.uint8)})
            self.probes += 1
            if not result.ok:
                self.estimator.observe_failure(result.bytes_up, result.e2e_s, self._now())
                self.client.close()
                return
            on_wire = result.transfer_s - self.estimator.rtt_s
            if on_wire >= PROBE_WIRE_S / 4:
                self.estimator.observe(result.bytes_up, result.bytes_down, result.transfer_s, self._now())
                return
            if size >= PROBE_BYTES[1]:  # the largest probe is still lost in the round trip: a floor is all it says
                self.estimator.observe_at_least(8 * result.bytes_up / (PROBE_WIRE_S / 4), self._now())
                return
            # The link is much faster than believed: a probe this small is lost in the round trip's jitter.
            size, bps = min(size * 8, PROBE_BYTES[1]), 8 * size / max(on_wire, 1e-4)

    def _use(self, kept: AdaptiveCutRecord) -> None:
        """The client runs `kept`'s device part next (taking the board's predicted time for it, when emulated)."""
        self.client.part = self.views[kept.cut.id]
        self.client.board_s = kept.predicted.device_s if self.emulate_board else 0.0

    def _remote(self, kept: AdaptiveCutRecord, feeds: dict[str, np.ndarray], begin: float) -> str:
        self._use(kept)
        tensors, _ = self.client.compute(feeds)
        compute_s = time.perf_counter() - begin
        sent = self.client.payload(tensors, feeds)
        # What is left of the deadline, from the time the device part really took.
        self.client.set_timeout(max(self._remote_budget(kept, time.perf_counter() - begin), 1e-3))
        # A timed-out request's connection is read aside: its late answer still carries the server's time.
        self.client.on_late = lambda sock, request_id: self._late.watch(sock, request_id, kept.cut.id)
        try:
            result = self.client.try_exchange(sent)
        except Refused as exc:  # the link is not to blame: the estimate learns nothing
            self._refuse(exc)
            return self._fall_back(kept, feeds, tensors, sent)
        finally:
            self.client.on_late = None
        if result.ok:
            self.estimator.observe(result.bytes_up, result.bytes_down, result.transfer_s, self._now())
            self.server_speed.observe(kept.cut.id, kept.predicted.server_s, result.server_s, self._now())
            off_wire_s = time.perf_counter() - begin - result.transfer_s - result.server_s  # the device's share
            self.device_speed.observe(kept.cut.id, kept.predicted.device_s, off_wire_s, self._now(), compute_s)
            self.last_outputs = {**self.client.kept(tensors), **result.outputs}
            return "remote"
        # The link had the wait less what the server was expected to take.
        server_s = self.server_speed.scale(kept.cut.id, self._now()) * kept.predicted.server_s
        self.estimator.observe_failure(result.bytes_up or kept.cut.bytes, result.e2e_s - server_s, self._now())
        self.client.close()  # a late answer must never be read as a later request's: the next one reconnects
        return self._fall_back(kept, feeds, tensors, sent)

    def _refuse(self, refusal: Refused) -> None:
        """The server refused this device's token: no more tries (see the module doc)."""
        self.refused = str(refusal)
        self.client.close()

    def _fall_back(self, kept: AdaptiveCutRecord, feeds: dict[str, np.ndarray], tensors: dict[str, np.ndarray],
                   sent: dict[str, np.ndarray]) -> str:
        """A request the server did not answer: an error, or under a deadline answered here (from the tensors
        computed where the cut's server graph is at hand)."""
        if self.deadline_s is None or self.alone is None:
            return "error"
        if not self.can_finish_from_tensors(kept):
            return self._from_the_start(feeds)
        return self._from_tensors(kept, tensors, sent)

    def _from_tensors(self, kept: AdaptiveCutRecord, tensors: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> str:
        """Finish here what the server did not answer in time: the cut's server graph on the tensors computed."""
        begin = time.perf_counter()
        suffix = self._suffixes[kept.cut.id]
        names = [o.name for o in suffix.get_outputs()]
        self.last_outputs = {**self.client.kept(tensors), **dict(zip(names, suffix.run(names, sent)))}
        self._wait_for_board(begin, self._rest_s(kept))
        return "local"

    def _from_the_start(self, feeds: dict[str, np.ndarray]) -> str:
        """The device answers alone: the whole model."""
        if self.alone is None:
            return "error"
        self._use(self.alone)
        begin = time.perf_counter()
        self.last_outputs = self.client.compute(feeds)[0]  # waits, as for any part, for the board's time
        self.device_speed.observe(self.alone.cut.id, self.alone.predicted.device_s, time.perf_counter() - begin,
                                  self._now())
        return "local"

    def _wait_for_board(self, begin: float, board_s: float) -> None:
        if self.emulate_board:
            left = board_s - (time.perf_counter() - begin)
            if left > 0:
                time.sleep(left)

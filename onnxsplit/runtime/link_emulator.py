"""A network link emulated in user space: a TCP relay between the device and the server.

Kernel netem needs root and is missing on many machines (this one included),
so the link is a relay process-side: every byte the device sends goes through
it, is cut into packets, and is released toward the server on the schedule a
real link would impose (and the same for the replies):

- bandwidth per direction: packets leave one after another, each taking
  bits / rate (a token bucket with a one-packet burst); the rate can follow a
  trace of (time_s, Mbit/s) steps instead of being fixed;
- one-way delay plus uniform jitter in [-jitter, +jitter], never reordering
  (TCP delivers in order);
- loss as a stall: with probability p a packet waits one retransmission
  timeout more, and, in order, everything behind it waits too;
- outage windows: nothing leaves while the link is down, and what was queued
  leaves when it returns.

`LinkSchedule` is the pure arithmetic (testable without sockets or clocks);
`LinkRelay` moves the bytes with two threads per direction.
"""
from __future__ import annotations

import queue
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from splitnn.cost_models.link_traces import rate_at
from splitnn.onnxsplit.core.errors import SplitnnError

PACKET_BYTES = 1448  # a TCP segment's payload on Ethernet


@dataclass(frozen=True)
class LinkSettings:
    """What the emulated link does to each direction. Rates in bit/s; None is unlimited."""

    uplink_bps: float | None = None
    downlink_bps: float | None = None
    delay_s: float = 0.0  # one way
    jitter_s: float = 0.0
    loss: float = 0.0  # probability that a packet stalls one retransmission timeout
    rto_s: float = 0.2
    outages: tuple[tuple[float, float], ...] = ()  # (start_s, end_s) since the relay started
    trace: tuple[tuple[float, float], ...] = ()  # (time_s, bps) steps, both directions; overrides the rates
    seed: int = 0

    def describe(self) -> str:
        def rate(bps: float | None) -> str:
            return "unlimited" if bps is None else f"{bps / 1e6:g} Mbit/s"

        # A trace sets both directions' rate: the fixed rates are then never used, and naming them would describe
        # another link.
        rates = (f"the trace's rate both ways ({describe_trace(self.trace)})" if self.trace
                 else f"up {rate(self.uplink_bps)}, down {rate(self.downlink_bps)}")
        parts = [rates, f"delay {self.delay_s * 1e3:g} ms each way"]
        if self.jitter_s:
            parts.append(f"jitter ±{self.jitter_s * 1e3:g} ms")
        if self.loss:
            parts.append(f"loss {self.loss:.2%} (stalls of {self.rto_s * 1e3:g} ms)")
        if self.outages:
            parts.append(f"{len(self.outages)} outage(s)")
        return ", ".join(parts)


# A trace of at most this many changes of rate is described change by change; a longer one by its range.
TRACE_STEPS_NAMED = 4


def describe_trace(trace: Sequence[tuple[float, float]]) -> str:
    """A trace's rates in words: `50 Mbit/s, then 1 Mbit/s from 4 s` (consecutive steps at one rate are one), or
    for a longer trace `180 steps from 0.5 to 50 Mbit/s`."""
    changes: list[tuple[float, float]] = []
    for start, bps in trace:
        if not changes or bps != changes[-1][1]:
            changes.append((start, bps))
    if len(changes) > TRACE_STEPS_NAMED:
        rates = [bps for _, bps in trace]
        return f"{len(trace)} steps from {min(rates) / 1e6:.3g} to {max(rates) / 1e6:.3g} Mbit/s"
    return ", then ".join(f"{bps / 1e6:.3g} Mbit/s" + (f" from {start:g} s" if k else "")
                          for k, (start, bps) in enumerate(changes))


@dataclass
class LinkSchedule:
    """When each packet of one direction arrives, given when it was handed to the link.

    Times are seconds on any clock that starts with the link (0 = start).
    """

    rate_bps: float | None
    settings: LinkSettings
    rng: random.Random = field(default_factory=random.Random)
    _free_at: float = 0.0  # when the link finishes sending what it already has
    _last_arrival: float = 0.0
    stalls: int = 0

    def rate_at(self, t: float) -> float | None:
        return rate_at(self.settings.trace, t) if self.settings.trace else self.rate_bps

    def _after_outages(self, t: float) -> float:
        for start, end in sorted(self.settings.outages):
            if start <= t < end:
                t = end
        return t

    def admit(self, now: float, nbytes: int) -> float:
        """Arrival time of a packet of `nbytes` handed to the link at `now`."""
        start = self._after_outages(max(now, self._free_at))
        rate = self.rate_at(start)
        done = start + (nbytes * 8 / rate if rate else 0.0)
        if self.settings.loss and self.rng.random() < self.settings.loss:
            done += self.settings.rto_s
            self.stalls += 1
        self._free_at = done
        jitter = self.rng.uniform(-self.settings.jitter_s, self.settings.jitter_s) if self.settings.jitter_s else 0.0
        arrival = max(done + max(self.settings.delay_s + jitter, 0.0), self._last_arrival)
        self._last_arrival = arrival
        return arrival


class _Direction:
    """One direction of one connection: a reader that schedules, a writer that releases on time."""

    def __init__(self, source: socket.socket, sink: socket.socket, schedule: LinkSchedule, epoch: float) -> None:
        self.source, self.sink, self.schedule, self.epoch = source, sink, schedule, epoch
        self.queue: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        self.bytes = 0
        self.threads = [threading.Thread(target=self._read, daemon=True), threading.Thread(target=self._write, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.source.recv(1 << 16)
                if not data:
                    break
                now = time.perf_counter() - self.epoch
                for offset in range(0, len(data), PACKET_BYTES):
                    packet = data[offset : offset + PACKET_BYTES]
                    self.queue.put((self.schedule.admit(now, len(packet)), packet))
        except OSError:
            pass
        self.queue.put(None)

    def _write(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    break
                arrival, packet = item
                wait = arrival - (time.perf_counter() - self.epoch)
                if wait > 0:
                    time.sleep(wait)
                # Everything else already due leaves in the same send.
                batch = [packet]
                done = False
                while True:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        done = True
                        break
                    if nxt[0] > time.perf_counter() - self.epoch:
                        self._send(b"".join(batch))
                        batch = []
                        wait = nxt[0] - (time.perf_counter() - self.epoch)
                        if wait > 0:
                            time.sleep(wait)
                    batch.append(nxt[1])
                if batch:
                    self._send(b"".join(batch))
                if done:
                    break
            self.sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _send(self, data: bytes) -> None:
        self.sink.sendall(data)
        self.bytes += len(data)


class LinkRelay:
    """Listens on (host, port) and relays each connection to `target` through the emulated link."""

    def __init__(self, target: tuple[str, int], settings: LinkSettings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.listener = socket.create_server((host, port))
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.epoch = time.perf_counter()
        self.directions: list[_Direction] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def stalls(self) -> int:
        return sum(d.schedule.stalls for d in self.directions)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            up = LinkSchedule(self.settings.uplink_bps, self.settings, random.Random(self.rng.random()))
            down = LinkSchedule(self.settings.downlink_bps, self.settings, random.Random(self.rng.random()))
            self.directions += [_Direction(client, server, up, self.epoch), _Direction(server, client, down, self.epoch)]

    def close(self) -> None:
        self._closed = True
        try:  # wakes the accepting thread (a plain close does not, on Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "LinkRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settings_for(uplink_bps: float | None, rtt_s: float, *, downlink_bps: float | None = None, jitter_s: float = 0.0,
                 loss: float = 0.0, outages: Sequence[tuple[float, float]] = (), trace: Sequence[tuple[float, float]] = (),
                 seed: int = 0) -> LinkSettings:
    """Settings from the figures a user gives: the round trip is split evenly between the directions."""
    if not 0 <= loss < 1:
        raise SplitnnError(f"loss {loss} must be a probability in [0, 1)")
    return LinkSettings(uplink_bps, downlink_bps if downlink_bps is not None else uplink_bps, rtt_s / 2, jitter_s, loss,
                        outages=tuple(outages), trace=tuple(trace), seed=seed)

"""Frames pipelined through a split: the device computes frame i+1 while frame i is on the link or the server.

One connection carries every frame. This thread is the device: it paces the
frames (at `fps`, or as fast as it can), computes each one's device part,
encodes it and sends it without waiting for the answer. A receiver thread
reads the answers as they come back. The server answers the frames of one
connection in order, so the link, the server and the device all work at the
same time, and the steady-state throughput is set by the slowest of them:

    throughput <= 1 / max(device compute + encode, uplink time, server compute, downlink time)

Every frame sent ends as ok or as an error (an error frame, a broken
connection, or no answer within the timeout): frames = ok + errors.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from splitnn.onnxsplit.runtime.device import DeviceClient
from splitnn.onnxsplit.runtime.wire import (
    ERROR,
    ConnectionClosed,
    ProtocolError,
    read_frame,
)


@dataclass
class StreamResult:
    frames: int
    ok: int
    errors: int
    error_messages: list[str]
    offered_fps: float | None  # the pacing asked for; None: as fast as the device goes
    throughput_fps: float  # steady state: answers after the first / time from the first answer to the last
    wall_s: float  # first frame started to last answer
    latencies_s: list[float] = field(default_factory=list)  # per answered frame: started to answered
    device_s: list[float] = field(default_factory=list)  # per frame: (dilated) compute + encode
    server_s: list[float] = field(default_factory=list)
    bytes_up: int = 0  # per frame, the last one sent
    bytes_down: int = 0
    most_in_flight: int = 0  # the most frames sent and not yet answered when a frame was sent (1: no overlap)


class _Answers:
    """What the receiver thread has seen, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done_at: dict[int, float] = {}
        self.server_s: dict[int, float] = {}
        self.errors: dict[int, str] = {}
        self.bytes_down = 0
        self.failed = ""  # why the connection can carry no more answers

    def sent(self, started: dict[int, float], request_id: int, at: float) -> int:
        """Record that frame `request_id` was sent at `at`; how many frames are now out, this one included."""
        with self.lock:
            started[request_id] = at
            return sum(1 for j in started if j not in self.done_at and j not in self.errors)


def _receive(sock: socket.socket, started: dict[int, float], sending: threading.Event, answers: _Answers,
             max_frame_bytes: int, timeout_s: float) -> None:
    """Read answers until every frame sent is answered and no more are coming.

    A frame fails when no answer came `timeout_s` after it was sent (its own
    clock, not the receiver's), or when the connection breaks.
    """
    sock.settimeout(timeout_s)
    message = ""
    while not message:
        with answers.lock:
            outstanding = [started[i] for i in started if i not in answers.done_at and i not in answers.errors]
        if not outstanding:
            if not sending.is_set():
                return
            select.select([sock], [], [], 0.05)  # wait for the next frame to be sent
            continue
        waited = time.perf_counter() - min(outstanding)
        if waited > timeout_s:
            message = f"timed out after {timeout_s:g} s waiting for the server"
            break
        readable, _, _ = select.select([sock], [], [], min(0.5, timeout_s - waited))
        if not readable:
            continue
        try:
            reply = read_frame(sock, max_frame_bytes)
        except socket.timeout:  # an answer started and stalled mid-frame: the stream cannot be resumed
            message = f"timed out after {timeout_s:g} s waiting for the server"
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            message = f"connection failed: {exc}"
        else:
            now = time.perf_counter()
            with answers.lock:
                if reply.kind == ERROR:
                    answers.errors[reply.request_id] = f"server error: {reply.message}"
                else:
                    answers.done_at[reply.request_id] = now
                    answers.server_s[reply.request_id] = reply.server_s
                    answers.bytes_down = reply.wire_bytes
    # No more answers can come on this connection: what is outstanding failed, and the sender stops.
    with answers.lock:
        answers.failed = message
        answers.errors.update({i: message for i in started if i not in answers.done_at and i not in answers.errors})


def stream_frames(client: DeviceClient, feeds: dict[str, np.ndarray], frames: int, fps: float | None = None,
                  progress: Callable[[int], None] | None = None) -> StreamResult:
    """Send `frames` frames through `client`'s server without waiting between them; see the module doc."""
    started: dict[int, float] = {}
    device_s: list[float] = []
    answers = _Answers()
    first = time.perf_counter()

    if client.part.server_empty:  # all on the device: the device's own loop is the pipeline
        for i in range(frames):
            _pace(first, i, fps)
            started[i] = time.perf_counter()
            device_s.append(client.compute(feeds)[1])
            answers.done_at[i] = time.perf_counter()
            if progress:
                progress(i + 1)
        return _result(frames, fps, first, started, device_s, answers, 0)

    sock = client._connect()
    sending = threading.Event()
    sending.set()
    receiver = threading.Thread(
        target=_receive, daemon=True,
        args=(sock, started, sending, answers, client.max_frame_bytes, client.timeout_s))
    receiver.start()
    bytes_up = 0
    most_in_flight = 0
    try:
        for i in range(frames):
            _pace(first, i, fps)
            request_id = i + 1
            begin = time.perf_counter()
            with answers.lock:
                if answers.failed:  # the connection is gone: the frames not sent fail with it
                    answers.errors.update({j: answers.failed for j in range(request_id, frames + 1)})
                    break
            tensors, compute_s = client.compute(feeds)
            encode_start = time.perf_counter()
            data = client.request_frame(client.payload(tensors, feeds), request_id)  # in the plan's codec
            device_s.append(compute_s + time.perf_counter() - encode_start)
            most_in_flight = max(most_in_flight, answers.sent(started, request_id, begin))
            try:
                sock.sendall(data)
            except OSError as exc:
                with answers.lock:
                    answers.errors.update({j: f"connection failed: {exc}" for j in range(request_id, frames + 1)})
                break
            bytes_up = len(data)
            if progress:
                with answers.lock:
                    progress(len(answers.done_at) + len(answers.errors))
    finally:
        sending.clear()
    receiver.join()
    client._drop()  # the connection may hold unread answers after a failure: never reuse it
    if progress:
        progress(frames)
    return _result(frames, fps, first, started, device_s, answers, bytes_up, most_in_flight)


def _pace(first: float, index: int, fps: float | None) -> None:
    if fps:
        wait = first + index / fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)


def _result(frames: int, fps: float | None, first: float, started: dict[int, float], device_s: list[float],
            answers: _Answers, bytes_up: int, most_in_flight: int = 1) -> StreamResult:
    done = sorted(answers.done_at.values())
    throughput = (len(done) - 1) / (done[-1] - done[0]) if len(done) >= 2 and done[-1] > done[0] else float("nan")
    return StreamResult(
        frames=frames,
        ok=len(answers.done_at),
        errors=frames - len(answers.done_at),
        error_messages=sorted(set(answers.errors.values())),
        offered_fps=fps,
        throughput_fps=throughput,
        wall_s=(done[-1] - first) if done else float("nan"),
        latencies_s=[answers.done_at[i] - started[i] for i in sorted(answers.done_at)],
        device_s=device_s,
        server_s=[answers.server_s[i] for i in sorted(answers.server_s)],
        bytes_up=bytes_up,
        bytes_down=answers.bytes_down,
        most_in_flight=most_in_flight,
    )

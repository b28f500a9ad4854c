"""One stage of a pipeline plan as a process: receive frames, run the stage's part, send each frame on (issue 33, 5).

A stage listens on a port and takes one upstream connection at a time (the
stage before it, or its link relay). Three threads keep a stream moving, as
in a pipeline each stage works on its own frame: one reads frames, one runs
the part on them in order, one sends them to `next` (the next stage, or for
the last stage the source, which gets them as responses). Frames are the
runtime's (runtime/wire.py); each request's id travels with it. Every stage
appends one row to the frame's TIMES tensor (the wall-clock time it had the
frame, its part done, it sent it on), so that the source can tell each
stage's and each hop's share of a request; the row costs 24 bytes per stage.

With `hold`, the part's run is held to the stage's predicted time on its
machine's profile (core/pacing.py): an emulated board on this host.
A relay stage (no part) forwards the frame as it is.

With `scale` K as well, it is held to K times that: a bench whose every time is dilated by K.

`python -m splitnn.onnxsplit.runtime.stage OUTDIR --stage MACHINE --next HOST:PORT [--port N] [--hold] [--scale K]`
prints
`listening PORT` once its session is loaded.
"""
from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.pipeline_records import Stage, StageFiles
from splitnn.onnxsplit.artifacts.plan_file import PipelinePlanFile, read_pipeline_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.runtime.auth import AUTH_TIMEOUT_S, HANDSHAKE_MAX_BYTES, demand_proof, give_proof
from splitnn.onnxsplit.runtime.wire import (
    AUTH,
    ERROR,
    REQUEST,
    RESPONSE,
    STATUS_UNAUTHORIZED,
    ConnectionClosed,
    Frame,
    ProtocolError,
    read_frame,
    send_frame,
)

TIMES = "splitnn.stage_times"  # float64 (stages, 3): when each stage had the frame, had run its part, sent it
_DONE = object()


class StageRunner:
    """A stage's part (None for a relay) and what it receives and sends, from a pipeline plan folder."""

    def __init__(self, folder: str | Path, plan: PipelinePlanFile, machine: str, hold: bool = False,
                 scale: float = 1.0) -> None:
        self.files: StageFiles = plan.stage_files(machine)
        self.stage: Stage = next(s for s in plan.stages if s.machine == machine)
        self.last = plan.files[-1].machine == machine
        model = self.files.ort or self.files.model
        self.session = create_session(Path(folder) / model, threads=1, spin=False) if model else None
        self.hold_s = self.stage.compute_s * scale if hold else None  # `scale`: the run's time dilation

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The frame this stage sends for the frame `tensors` it received (its TIMES row added)."""
        received = time.time()
        start = time.perf_counter()
        pool = dict(tensors)
        if self.session is not None:
            f = self.files
            pool.update(zip(f.outputs, self.session.run(list(f.outputs), {n: pool[n] for n in f.inputs})))
            hold_until(start, self.hold_s)
        rows = np.asarray(tensors.get(TIMES, np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
        out = {name: pool[name] for name in self.files.sends}
        out[TIMES] = np.vstack([rows, [[received, time.time(), 0.0]]])
        return out


@dataclass(frozen=True)
class StageGuard:
    """What protects a stage's connections (serve --stage): a shared token that whoever connects must prove (the
    stage before, or at the source's answers the last stage), and TLS: `tls` (a server context) on the connections
    it accepts, `next_tls` (a client context trusting the next one's certificate) on the one it opens."""

    token: bytes | None = None
    tls: ssl.SSLContext | None = None
    next_tls: ssl.SSLContext | None = None


def _log(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def accept_guarded(listener: socket.socket, guard: StageGuard, log: Callable[[str], None] = _log
                   ) -> socket.socket | None:
    """The next connection on `listener` that passes `guard` (the TLS handshake, then the token's challenge); one
    refused is logged and closed. None once the listener is closed."""
    while True:
        try:
            sock, peer = listener.accept()
        except OSError:
            return None
        where = f"{peer[0]}:{peer[1]}"
        try:
            sock.settimeout(AUTH_TIMEOUT_S)  # a peer that says nothing does not hold the stage
            if guard.tls is not None:
                sock = guard.tls.wrap_socket(sock, server_side=True)
        except OSError as exc:  # ssl.SSLError and a timeout are OSErrors
            log(f"refused {where}: the TLS handshake failed ({exc})")
            sock.close()
            continue
        reason = demand_proof(sock, guard.token) if guard.token is not None else None
        if reason is None:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if guard.token is not None:
                with contextlib.suppress(OSError):
                    send_frame(sock, Frame(AUTH, 0))  # accepted: the peer waits for this verdict (connect_guarded)
            return sock
        log(f"refused {where}: {reason}")
        with contextlib.suppress(OSError):
            send_frame(sock, Frame(ERROR, 0, STATUS_UNAUTHORIZED, message=f"authentication failed ({reason}): give "
                                                                          "the same --token-file on both sides"))
        sock.close()


def connect_guarded(address: tuple[str, int], guard: StageGuard, timeout_s: float = 10.0) -> socket.socket:
    """A connection to `address` (the next stage, or the source's answers) through its guard: TLS where `guard`
    has `next_tls`, the token's proof where it has a token; one line where it cannot be made."""
    where = f"{address[0]}:{address[1]}"
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
    except OSError as exc:
        raise SplitnnError(f"cannot reach {where} ({exc}): start the stage there first (splitnn serve OUTDIR --stage "
                           "MACHINE), or at the source `splitnn device`") from None
    try:
        if guard.next_tls is not None:
            sock = guard.next_tls.wrap_socket(sock, server_hostname=address[0])
        if guard.token is not None:
            give_proof(sock, guard.token, where)
            _verdict(sock, where, timeout_s)
    except ssl.SSLError as exc:
        sock.close()
        raise SplitnnError(f"TLS with {where} failed ({exc}): is it served with --tls-cert or --self-signed, and "
                           "is its certificate the one --next-tls-ca (or --tls-ca) trusts?") from None
    except SplitnnError:
        sock.close()
        raise
    except OSError as exc:  # a reset or a timeout in the handshake: TLS on one side only, or a busy peer
        sock.close()
        raise SplitnnError(f"the connection to {where} broke while it was being set up ({exc}): do both sides "
                           "speak TLS (or neither), hold the same --token-file, and is nothing else connected "
                           "to it?") from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _verdict(sock: socket.socket, where: str, timeout_s: float) -> None:
    """The accepting side's verdict on the token's proof (accept_guarded): AUTH, or one line with its refusal."""
    try:
        sock.settimeout(timeout_s)
        frame = read_frame(sock, HANDSHAKE_MAX_BYTES)
    except (ConnectionClosed, ProtocolError, OSError) as exc:
        raise SplitnnError(f"{where} closed the connection after the token's proof ({exc})") from None
    if frame.kind == ERROR:
        raise SplitnnError(f"{where} turned this connection away: {frame.message}")
    if frame.kind != AUTH:
        raise SplitnnError(f"{where} answered the token's proof with something else: is it a `splitnn serve "
                           "--stage` or a source's answers address?")


def serve_stage(runner: StageRunner, listener: socket.socket, next_address: tuple[str, int],
                stop: threading.Event | None = None, guard: StageGuard = StageGuard(),
                log: Callable[[str], None] = _log) -> None:
    """Serve upstream connections on `listener` one after another (each through `guard`), sending every frame on
    to `next_address`; a next stage it cannot reach is logged and the upstream connection closed."""
    stop = stop or threading.Event()
    while not stop.is_set():
        upstream = accept_guarded(listener, guard, log)
        if upstream is None:
            return
        try:
            downstream = connect_guarded(next_address, guard)
        except (SplitnnError, OSError) as exc:
            log(f"splitnn stage {runner.files.machine}: {exc}")
            upstream.close()
            continue
        with upstream, downstream:
            _relay_frames(runner, upstream, downstream)


class StageServer:
    """One stage of a pipeline plan served on this machine (`splitnn serve OUTDIR --stage MACHINE --next
    HOST:PORT`): it takes the frames of the stage before it (through `guard`), runs its part and sends them on to
    `next_address`. `serve_forever()` in this thread, or `start()` for a background one; `close()` ends it."""

    def __init__(self, folder: str | Path, machine: str, next_address: tuple[str, int], host: str = "127.0.0.1",
                 port: int = 0, guard: StageGuard = StageGuard(), log: Callable[[str], None] = _log) -> None:
        folder = Path(folder)
        plan = read_pipeline_plan(folder)
        plan.check_artifacts(folder, None)
        if machine == plan.stages[0].machine:
            raise SplitnnError(f"'{machine}' is the plan's source: it runs the first stage itself, with `splitnn device "
                               f"{folder} --server NEXT --answers HOST:PORT`")
        self.runner = StageRunner(folder, plan, machine)
        try:
            self.listener = socket.create_server((host, port))
        except OSError as exc:
            raise SplitnnError(f"cannot listen on {host}:{port} ({exc}): choose another --port or --host") from None
        self.address = self.listener.getsockname()[:2]
        self.next_address, self.guard, self.log = next_address, guard, log
        self.stopped = threading.Event()

    def serve_forever(self) -> None:
        serve_stage(self.runner, self.listener, self.next_address, self.stopped, self.guard, self.log)

    def start(self) -> StageServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() waiting in another thread
        self.listener.close()

    def __enter__(self) -> StageServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _relay_frames(runner: StageRunner, upstream: socket.socket, downstream: socket.socket) -> None:
    """Read, run and send frames until the upstream connection closes or a frame cannot be read, run or sent (three
    threads: a pipeline's stage). Whatever ends one thread ends the others: nothing waits on a queue forever."""
    import sys

    computed: queue.Queue[Any] = queue.Queue(maxsize=4)
    received: queue.Queue[Any] = queue.Queue(maxsize=4)
    broken = threading.Event()

    def read() -> None:
        try:
            while not broken.is_set():
                received.put(read_frame(upstream))
        except (ConnectionClosed, OSError):
            pass
        except Exception as exc:  # a malformed or oversized frame: said, and the connection ends
            print(f"splitnn stage {runner.files.machine}: {exc}", file=sys.stderr, flush=True)
        finally:
            received.put(_DONE)

    def compute() -> None:
        try:
            while not broken.is_set() and (frame := received.get()) is not _DONE:
                computed.put((frame.request_id, runner.run(frame.tensors)))
        except Exception as exc:  # the part failed on a frame: said, and the connection ends
            print(f"splitnn stage {runner.files.machine}: {exc}", file=sys.stderr, flush=True)
            broken.set()
        finally:
            computed.put(_DONE)

    reader, worker = threading.Thread(target=read, daemon=True), threading.Thread(target=compute, daemon=True)
    reader.start()
    worker.start()
    kind = RESPONSE if runner.last else REQUEST
    while (item := computed.get()) is not _DONE:
        if broken.is_set():
            continue  # the next stage is gone: what is still computed is dropped until the threads end
        request_id, tensors = item
        tensors[TIMES][-1, 2] = time.time()
        try:
            send_frame(downstream, Frame(kind, request_id, tensors=tensors))
        except OSError:
            broken.set()
    if broken.is_set():
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_RDWR)  # the reader stops; the stage before sees the break
        while received.get() is not _DONE:
            pass
    reader.join(timeout=1)


def _main(argv: list[str]) -> None:
    import sys

    from splitnn.onnxsplit.runtime.device import parse_address

    folder = Path(argv[0])
    machine = argv[argv.index("--stage") + 1]
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    next_address = parse_address(argv[argv.index("--next") + 1])
    try:
        scale = float(argv[argv.index("--scale") + 1]) if "--scale" in argv else 1.0
        runner = StageRunner(folder, read_pipeline_plan(folder), machine, hold="--hold" in argv, scale=scale)
    except SplitnnError as exc:
        print(f"splitnn: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    listener = socket.create_server(("127.0.0.1" if "--host" not in argv else argv[argv.index("--host") + 1], port))
    print(f"listening {listener.getsockname()[1]}", flush=True)
    try:
        serve_stage(runner, listener, next_address)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])

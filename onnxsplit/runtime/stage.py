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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.pipeline_records import Stage, StageFiles
from splitnn.onnxsplit.artifacts.plan_file import PipelinePlanFile, read_pipeline_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.runtime.wire import REQUEST, RESPONSE, ConnectionClosed, Frame, read_frame, send_frame

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


def serve_stage(runner: StageRunner, listener: socket.socket, next_address: tuple[str, int],
                stop: threading.Event | None = None) -> None:
    """Serve upstream connections on `listener` one after another, sending every frame on to `next_address`."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            upstream, _ = listener.accept()
        except OSError:
            return
        with upstream, socket.create_connection(next_address) as downstream:
            for sock in (upstream, downstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _relay_frames(runner, upstream, downstream)


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

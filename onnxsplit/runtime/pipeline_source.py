"""The source machine of a pipeline plan on a real network (issue 33, item 5): `splitnn device` on a pipeline plan.

The source runs the plan's first stage on each input, sends the frame to the
next stage (`splitnn serve OUTDIR --stage MACHINE --next ...` on its
machine), and takes the answers that the last stage sends to the source's
answers address (the last stage's --next). It listens there from the start,
and connects on when told (`connect`): each stage connects onward when a
connection reaches it, the last one to the answers. Both legs go through the same guard as the stages'
(runtime/stage.py StageGuard): the shared token proven on every connection,
TLS to the next stage where a CA is given, and TLS at the answers where a
certificate is.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import read_pipeline_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.stage import TIMES, StageGuard, StageRunner, accept_guarded, connect_guarded
from splitnn.onnxsplit.runtime.wire import REQUEST, ConnectionClosed, Frame, ProtocolError, read_frame, send_frame


class PipelineSource:
    """Requests through a pipeline plan's stages on their machines: `request(feeds)` runs the first stage here,
    sends the frame on and returns the model's outputs from the answer. Use it in a `with` block, or `close()`."""

    def __init__(self, folder: str | Path, answers: tuple[str, int] = ("127.0.0.1", 0),
                 guard: StageGuard = StageGuard(), timeout_s: float = 30.0) -> None:
        folder = Path(folder)
        plan = read_pipeline_plan(folder)
        plan.check_artifacts(folder, None)
        if len(plan.stages) == 1:
            raise SplitnnError(f"the plan in '{folder}' runs on its source alone ({plan.stages[0].machine}): there is "
                               "no stage to send to; run the model there, or partition over more machines")
        self.plan, self.timeout_s = plan, timeout_s
        self.runner = StageRunner(folder, plan, plan.stages[0].machine)
        try:
            self.listener = socket.create_server(answers)
        except OSError as exc:
            raise SplitnnError(f"cannot listen for the answers on {answers[0]}:{answers[1]} ({exc}): choose another "
                               "--answers port, or an address of this machine") from None
        self.answers_address = self.listener.getsockname()[:2]
        self._arrived: dict[int, Frame] = {}
        self._condition = threading.Condition()
        self.guard = guard
        self.next: socket.socket | None = None
        threading.Thread(target=self._read_answers, daemon=True).start()
        self._count = 0

    def connect(self, next_address: tuple[str, int]) -> PipelineSource:
        """Open the connection to the next stage (its `splitnn serve --stage` must be listening); the stages after
        it connect onward, and the last one to this source's answers address."""
        self.next = connect_guarded(next_address, self.guard)
        return self

    def _read_answers(self) -> None:
        """The last stage's connections, one after another (through the guard), each answer kept by request id."""
        while (sock := accept_guarded(self.listener, StageGuard(self.guard.token, self.guard.tls))) is not None:
            with sock, contextlib.suppress(ConnectionClosed, ProtocolError, OSError):
                while True:
                    frame = read_frame(sock)
                    with self._condition:
                        self._arrived[frame.request_id] = frame
                        self._condition.notify_all()

    def request(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """The model's outputs for `feeds` through every stage, and the seconds from the first stage's start to the
        answer."""
        if self.next is None:
            raise SplitnnError("the source is not connected to the next stage: call connect(HOST, PORT) first")
        self._count += 1
        request_id = self._count
        start = time.perf_counter()
        tensors = self.runner.run(feeds)
        tensors[TIMES][-1, 2] = time.time()
        try:
            send_frame(self.next, Frame(REQUEST, request_id, tensors=tensors))
        except OSError as exc:
            raise SplitnnError(f"the next stage closed the connection ({exc}): is its `splitnn serve` still "
                               "running?") from None
        with self._condition:
            if not self._condition.wait_for(lambda: request_id in self._arrived, self.timeout_s):
                raise SplitnnError(f"no answer to request {request_id} within {self.timeout_s:g} s: is the last "
                                   f"stage's --next this source's answers address "
                                   f"({self.answers_address[0]}:{self.answers_address[1]}), does every hop hold the "
                                   "same --token-file, and does each stage reach the next (see their logs)?")
            frame = self._arrived.pop(request_id)
        return {name: frame.tensors[name] for name in self.plan.outputs}, time.perf_counter() - start

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.next is not None:
                self.next.close()
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the answers' accept()
        self.listener.close()

    def __enter__(self) -> PipelineSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""The server side: one onnxruntime session, loaded once, answering frames from any number of devices.

Each connection gets a thread (socketserver's ThreadingTCPServer; an
onnxruntime session may be run from several threads at once). A frame that
breaks the protocol gets an error frame and the connection goes on, except
when the stream itself cannot be trusted any more (a wrong magic number:
the frame boundaries are lost), where the error frame is followed by a close.
With a token (`serve --token-file`), a connection serves requests only after the device has answered its
challenge (runtime/auth.py).
"""
from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import read_vertical_plan
from splitnn.onnxsplit.codecs.base import Codec
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.runtime.auth import ANSWER, HANDSHAKE_MAX_BYTES, NONCE, answer_is_right, new_nonce
from splitnn.onnxsplit.runtime.wire import (
    AUTH,
    CHALLENGE,
    DEFAULT_MAX_FRAME_BYTES,
    ERROR,
    REQUEST,
    RESPONSE,
    STATUS_BAD_FRAME,
    STATUS_BAD_INPUT,
    STATUS_BUSY,
    STATUS_FAILED,
    STATUS_UNAUTHORIZED,
    ConnectionClosed,
    Frame,
    ProtocolError,
    read_frame,
    send_frame,
)

# A request carrying only this tensor is a bandwidth probe (runtime/bandwidth.py): answered at once, empty.
PROBE_TENSOR = "__splitnn_probe__"
# How long a device may take to answer the challenge before the connection is refused (a silent client does not
# hold its thread).
AUTH_TIMEOUT_S = 10.0
OTHER_FRAME = "something else than an answer to the challenge (a device without the token?)"


@dataclass
class ServerCounts:
    ok: int = 0
    errors: int = 0
    connections: int = 0  # admitted, since the start
    open: int = 0  # admitted and not yet closed
    refused_busy: int = 0  # turned away at --max-connections
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.errors += 1


def _peer(sock: socket.socket) -> str:
    """HOST:PORT of the other end, for the log."""
    try:
        return "{}:{}".format(*sock.getpeername()[:2])
    except OSError:
        return "a closed connection"


def server_models(outdir: str | Path) -> list[Path]:
    """Every server graph of a plan folder: the server part of a split, or one per kept cut of an adaptive plan
    (a ModelServer holds them all); empty when the plan puts everything on the device."""
    from splitnn.onnxsplit.artifacts.plan_file import AdaptivePlanFile, plan_strategy, read_plan

    if plan_strategy(outdir) != "adaptive":
        read_vertical_plan(outdir).check_artifacts(outdir, "server")
        path = server_part_path(outdir)
        return [] if path is None else [path]
    plan = read_plan(outdir, "adaptive")
    assert isinstance(plan, AdaptivePlanFile)
    plan.check_artifacts(outdir, "server")
    return [Path(outdir) / k.server_model for k in plan.kept if k.server_model is not None]


def plan_codecs(outdir: str | Path) -> dict[str, Codec]:
    """The calibrated codecs a plan's server decodes with (int8:calibrated and the image codecs: each tensor's range,
    from plan.json); empty for every other codec, which a frame names in full."""
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy

    if plan_strategy(outdir) != "vertical":
        return {}
    plan = read_vertical_plan(outdir)
    if plan.codec is None or not plan.codec.ranges:
        return {}
    codecs = plan.codec.codecs()
    return dict(codecs) if isinstance(codecs, Mapping) else {}


def server_part_path(outdir: str | Path) -> Path | None:
    """The server part of a plan folder; None when the plan puts everything on the device."""
    outdir = Path(outdir)
    plan = read_vertical_plan(outdir)
    if plan.parts.server.empty or plan.artifacts.server_model is None:
        return None
    return outdir / plan.artifacts.server_model


class ModelServer:
    """Serve `model` (an .onnx or .ort file; None: echo the inputs back, for an empty server part), or several
    models (an adaptive plan's server graphs, one per cut): each request goes to the one whose inputs are the
    tensors it carries. `codecs`: the calibrated codecs of the plan (plan_codecs), by tensor name."""

    def __init__(self, model: Path | Sequence[Path] | None, host: str = "127.0.0.1", port: int = 0,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, threads: int | None = None, spin: bool = True,
                 codecs: Mapping[str, Codec] | None = None, token: bytes | None = None,
                 log: Callable[[str], None] | None = None, tls: ssl.SSLContext | None = None,
                 max_connections: int | None = None, idle_timeout_s: float | None = None) -> None:
        models = [] if model is None else [model] if isinstance(model, Path) else list(model)
        sessions = [create_session(m, threads=threads, spin=spin) for m in models]
        # Per session, its input and output names: read once, not on every request.
        self.graphs = [(s, [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]) for s in sessions]
        self.session = sessions[0] if sessions else None
        self.inputs, self.outputs = (self.graphs[0][1], self.graphs[0][2]) if self.graphs else ([], [])
        self.max_frame_bytes = max_frame_bytes
        self.codecs = dict(codecs or {})
        self.token, self.log = token, log or (lambda line: None)  # token: devices must answer its challenge
        self.tls = tls  # every connection encrypted (runtime/tls.py)
        # A connection over max_connections is turned away with an error frame; one silent for idle_timeout_s (or
        # that sends a frame that slowly) is closed, so no client holds a thread for ever.
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self.counts = ServerCounts()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        try:
            self._server = Server((host, port), Handler)
        except OSError as exc:
            raise SplitnnError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]

    def run(self, tensors: dict) -> dict:  # type: ignore[type-arg]
        if set(tensors) == {PROBE_TENSOR}:
            return {}  # a device measuring the link: the bytes came, an empty answer goes back
        if self.session is None:
            return tensors
        session, inputs, outputs = self.graphs[0]
        if len(self.graphs) > 1:  # the graph of the cut the device chose: the one that reads what it sent
            session, inputs, outputs = next((g for g in self.graphs if set(g[1]) == set(tensors)), self.graphs[0])
        missing = [n for n in inputs if n not in tensors]
        if missing:
            raise ProtocolError(f"request lacks input(s) {', '.join(missing)} (expected {', '.join(inputs)})",
                                STATUS_BAD_INPUT)
        values = session.run(outputs, {n: tensors[n] for n in inputs})
        return dict(zip(outputs, values))

    def _authenticated(self, sock: socket.socket) -> bool:
        """With a token: challenge the device, and refuse it (one error frame, a log line) unless it answers right
        within AUTH_TIMEOUT_S (runtime/auth.py)."""
        if self.token is None:
            return True
        nonce = new_nonce()
        peer = _peer(sock)  # read now: a peer that resets has no address any more
        try:
            send_frame(sock, Frame(CHALLENGE, 0, tensors={NONCE: np.frombuffer(nonce, np.uint8)}))
            sock.settimeout(AUTH_TIMEOUT_S)
            frame = read_frame(sock, HANDSHAKE_MAX_BYTES)
            sock.settimeout(None)
            given = frame.tensors.get(ANSWER) if frame.kind == AUTH else None
            if given is not None and answer_is_right(self.token, nonce, given.tobytes()):
                return True
            reason = "a wrong answer to the challenge" if frame.kind == AUTH else OTHER_FRAME
        except ProtocolError:
            reason = OTHER_FRAME
        except (ConnectionClosed, OSError) as exc:
            reason = f"no answer to the challenge ({exc})"
        self.log(f"refused {peer}: {reason}")
        with contextlib.suppress(OSError):
            send_frame(sock, Frame(ERROR, 0, STATUS_UNAUTHORIZED, message="authentication failed: this server needs "
                                   "the device to hold its token (--token-file)"))
        sock.close()
        return False

    def _encrypted(self, sock: socket.socket) -> socket.socket | None:
        """With TLS: the connection after its handshake (None, logged, when the handshake fails)."""
        if self.tls is None:
            return sock
        peer = _peer(sock)  # read now: a failed handshake may leave no address
        try:
            sock.settimeout(AUTH_TIMEOUT_S)
            wrapped = self.tls.wrap_socket(sock, server_side=True)
            wrapped.settimeout(None)
            return wrapped
        except (ssl.SSLError, OSError) as exc:
            self.log(f"refused {peer}: TLS handshake failed ({exc})")
            sock.close()
            return None

    def _admitted(self, sock: socket.socket) -> bool:
        """Count the connection in, or turn it away (an error frame, a log line) at max_connections."""
        with self.counts.lock:
            busy = self.max_connections is not None and self.counts.open >= self.max_connections
            if busy:
                self.counts.refused_busy += 1
            else:
                self.counts.open += 1
                self.counts.connections += 1
        if busy:
            self.log(f"refused {_peer(sock)}: --max-connections {self.max_connections} reached")
            with contextlib.suppress(OSError):
                send_frame(sock, Frame(ERROR, 0, STATUS_BUSY, message=f"the server is at its {self.max_connections} "
                                       "connections: try again later"))
        return not busy

    def _handle(self, plain: socket.socket) -> None:
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._admitted(plain):
            return
        try:
            sock = self._encrypted(plain)
            if sock is not None and self._authenticated(sock):
                sock.settimeout(self.idle_timeout_s)
                self._serve_connection(sock)
        finally:
            with self.counts.lock:
                self.counts.open -= 1

    def _serve_connection(self, sock: socket.socket) -> None:
        """Answer the connection's frames until it closes, breaks the protocol beyond repair, or idles out."""
        while True:
            try:
                frame = read_frame(sock, self.max_frame_bytes, self.codecs)
            except ConnectionClosed:
                return
            except socket.timeout:
                self.log(f"closed {_peer(sock)}: nothing for {self.idle_timeout_s:g} s")
                return
            except ProtocolError as exc:
                self.counts.add(False)
                try:
                    send_frame(sock, Frame(ERROR, exc.request_id, exc.status, message=str(exc)))
                except OSError:
                    return
                if not exc.resumable:  # frame boundaries lost: nothing more can be read reliably
                    sock.close()
                    return
                continue
            except OSError:
                return
            if frame.kind != REQUEST:
                self.counts.add(False)
                send_frame(sock, Frame(ERROR, frame.request_id, STATUS_BAD_FRAME, message="expected a request frame"))
                continue
            start = time.perf_counter()
            try:
                outputs = self.run(frame.tensors)
                reply = Frame(RESPONSE, frame.request_id, server_s=time.perf_counter() - start, tensors=outputs)
                self.counts.add(True)
            except ProtocolError as exc:
                reply = Frame(ERROR, frame.request_id, exc.status, message=str(exc))
                self.counts.add(False)
            except Exception as exc:  # onnxruntime rejects the tensors (dtype, shape): the device's mistake
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                reply = Frame(ERROR, frame.request_id, STATUS_FAILED, message=f"the server part failed: {first}")
                self.counts.add(False)
            try:
                send_frame(sock, reply)
            except OSError:
                return

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.1)

    def start(self) -> "ModelServer":
        """Serve on a background thread."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main(argv: list[str]) -> None:
    """`python -m splitnn.onnxsplit.runtime.server MODEL|- [--port N] [--no-spin] [--plan OUTDIR] [--tls-cert C --tls-key K]`:
    what run-bench starts as its server process (--plan: the folder whose calibrated codecs it decodes with).

    Prints `listening PORT` once the session is loaded.
    """
    import sys

    model = None if argv[0] == "-" else Path(argv[0])
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    codecs = plan_codecs(argv[argv.index("--plan") + 1]) if "--plan" in argv else None
    tls = None
    if "--tls-cert" in argv:
        from splitnn.onnxsplit.runtime.tls import server_context

        tls = server_context(argv[argv.index("--tls-cert") + 1], argv[argv.index("--tls-key") + 1])
    server = ModelServer(model, port=port, spin="--no-spin" not in argv, codecs=codecs, tls=tls)
    print(f"listening {server.address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])

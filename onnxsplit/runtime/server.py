"""The server side: one onnxruntime session, loaded once, answering frames from any number of devices.

Each connection gets a thread (socketserver's ThreadingTCPServer; an
onnxruntime session may be run from several threads at once). A frame that
breaks the protocol gets an error frame and the connection goes on, except
when the stream itself cannot be trusted any more (a wrong magic number:
the frame boundaries are lost), where the error frame is followed by a close.
With a token (`serve --token-file`), a connection serves requests only after the device has answered its
challenge (runtime/auth.py); a device that does not is told so in an error frame (STATUS_UNAUTHORIZED), which it
reads whole: a refused connection is drained before it closes (`_refuse`), so no reset discards the frame.

A flood of connections (issue 30, item 7) neither fills the listen queue (LISTEN_BACKLOG, not socketserver's 5)
nor holds the accepting thread: it only accepts, and everything that reads from a peer (the TLS handshake, the
challenge, the frames) runs in the connection's own thread under a timeout. One address holds at most
`ServerLimits.max_per_address` connections at once, so a client that opens many and sends nothing cannot take the
places of every other device.
"""
from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import AdaptivePlanFile, VerticalPlanFile, read_vertical_plan
from splitnn.onnxsplit.codecs.base import Codec
from splitnn.onnxsplit.codecs.specs import parse_codec, warm_up
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.runtime.auth import AUTH_TIMEOUT_S, WRONG_ANSWER, demand_proof
from splitnn.onnxsplit.runtime.batching import BatchCounts, Batcher, batchable_session
from splitnn.onnxsplit.runtime.server_counts import DeviceCounts, ServerCounts
from splitnn.onnxsplit.runtime.wire import (
    DEVICE_NAME_MAX_BYTES,
    DEVICE_NAME_TENSOR,
    PROBE_TENSOR,
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
    FrameTooSlow,
    ProtocolError,
    encode_frame,
    read_frame,
    send_frame,
)

# How long a device may take to answer the challenge before the connection is refused (a silent client does not
# hold its thread).
# The listen queue: connections the kernel completes while the accepting thread catches up (socketserver's default
# of 5 made a burst of connections wait for one-second SYN retries). The kernel caps it at its own maximum
# (net.core.somaxconn on Linux), so asking for more than that costs nothing.
LISTEN_BACKLOG = 4096
# A refused connection is read (and what it sends dropped) until its peer closes, for at most this long and this
# many bytes, so that its error frame is not lost to a reset: a device refused for its token reads why.
REFUSAL_LINGER_S = AUTH_TIMEOUT_S
BUSY_LINGER_S = 1.0  # the same for one turned away before it said anything (it sends at most its first request)
REFUSAL_DRAIN_BYTES = 64 * 1024 * 1024
# Refusals at --max-connections or --max-per-address are logged at most once per address in this many seconds
# (a flood would otherwise write a line per connection); the summary counts them all.
REFUSAL_LOG_EVERY_S = 1.0


@dataclass(frozen=True)
class ServerLimits:
    """What one server allows: connections at once (None: any number), how long a connection may be silent (None:
    for ever), how requests from several devices are batched (max_batch 1: one request at a time), and connections
    at once from one address (None: any number; `serve --max-per-address`)."""

    max_connections: int | None = None
    idle_timeout_s: float | None = None
    max_batch: int = 1
    max_wait_s: float = 0.002
    max_per_address: int | None = None


@dataclass
class _Graph:
    """One server graph: its session, its input and output names (read once, not on every request), and its
    batcher when it batches."""

    session: Any
    inputs: list[str]
    outputs: list[str]
    batcher: Batcher | None = None


@dataclass
class _Connection:
    """One device's connection, as the server tracks it: who, and whether a request of it is being answered
    (a draining server waits for those, and closes the others at once)."""

    sock: socket.socket
    device: DeviceCounts
    busy: bool = False


def _address(sock: socket.socket) -> str:
    """The other end's host (no port), which --max-per-address counts by; empty when it has none any more."""
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return ""


def _peer(sock: socket.socket) -> str:
    """HOST:PORT of the other end, for the log."""
    try:
        return "{}:{}".format(*sock.getpeername()[:2])
    except OSError:
        return "a closed connection"


def server_models(outdir: str | Path) -> list[Path]:
    """Every server graph of a plan folder: the server part of a split, or one per kept cut of an adaptive plan
    (a ModelServer holds them all); empty when the plan puts everything on the device."""
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy, read_plan

    if plan_strategy(outdir) != "adaptive":
        read_vertical_plan(outdir).check_artifacts(outdir, "server")
        path = server_part_path(outdir)
        return [] if path is None else [path]
    plan = read_plan(outdir, "adaptive")
    assert isinstance(plan, AdaptivePlanFile)
    plan.check_artifacts(outdir, "server")
    return [Path(outdir) / k.server_model for k in plan.kept if k.server_model is not None]


def _codec_plan(outdir: str | Path) -> VerticalPlanFile | AdaptivePlanFile | None:
    """The plan whose frames may carry codecs (a split or an adaptive plan); None for a tile plan."""
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy, read_plan

    strategy = plan_strategy(outdir)
    if strategy == "vertical":
        return read_vertical_plan(outdir)
    if strategy == "adaptive":
        plan = read_plan(outdir, "adaptive")
        assert isinstance(plan, AdaptivePlanFile)
        return plan
    return None


def models_to_serve(outdir: str | Path) -> list[Path]:
    """server_models, refused in one line where the plan puts the whole model on the device (nothing to serve)."""
    models = server_models(outdir)
    if not models:
        raise SplitnnError(f"'{outdir}' puts the whole model on the device: its server part is empty and there is "
                           "nothing to serve (run `splitnn device` alone, or partition with another cut)")
    return models


def plan_codecs(outdir: str | Path) -> dict[str, Codec]:
    """The calibrated codecs a plan's server decodes with (int8:calibrated and the image codecs: each tensor's range,
    from plan.json; of every kept cut for an adaptive plan, as a tensor's range is the same whichever cut sends it);
    empty for every other codec, which a frame names in full."""
    plan = _codec_plan(outdir)
    held: dict[str, Codec] = {}
    for record in plan.request_codecs if plan is not None else ():
        codecs = record.codecs() if record.ranges else None
        held.update(codecs if isinstance(codecs, Mapping) else {})
    return held


def plan_reply_codec(outdir: str | Path) -> Codec | None:
    """The codec a plan's server answers in (partition --reply-codec); None: plain .npy."""
    plan = _codec_plan(outdir)
    return parse_codec(plan.reply_codec.name) if plan is not None and plan.reply_codec is not None else None


def plan_codec_names(outdir: str | Path) -> tuple[str, ...]:
    """The codecs a plan's frames travel in, requests and answers: what codecs.specs.warm_up loads before the
    first request."""
    plan = _codec_plan(outdir)
    return plan.codec_names if plan is not None else ()


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
    tensors it carries. `codecs`: the calibrated codecs of the plan (plan_codecs), by tensor name. With
    `limits.max_batch` over 1, each graph that takes a batch (runtime/batching.py) answers concurrent requests
    in one session run."""

    def __init__(self, model: Path | Sequence[Path] | None, host: str = "127.0.0.1", port: int = 0,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, threads: int | None = None, spin: bool = True,
                 codecs: Mapping[str, Codec] | None = None, token: bytes | None = None,
                 log: Callable[[str], None] | None = None, tls: ssl.SSLContext | None = None,
                 limits: ServerLimits = ServerLimits(), reply_codec: Codec | None = None) -> None:
        models = [] if model is None else [model] if isinstance(model, Path) else list(model)
        self.max_frame_bytes = max_frame_bytes
        self.codecs = dict(codecs or {})
        self.reply_codec = reply_codec  # the answers' codec (plan_reply_codec); None: plain .npy
        self.token, self.log = token, log or (lambda line: None)  # token: devices must answer its challenge
        self.tls = tls  # every connection encrypted (runtime/tls.py)
        # A connection over max_connections is turned away with an error frame; one silent for idle_timeout_s (or
        # that sends a frame that slowly) is closed, so no client holds a thread for ever.
        self.limits = limits
        self.counts = ServerCounts()
        self.graphs = [self._graph(m, threads, spin) for m in models]
        self.session = self.graphs[0].session if self.graphs else None
        self.inputs, self.outputs = (self.graphs[0].inputs, self.graphs[0].outputs) if self.graphs else ([], [])
        self._connections: dict[int, _Connection] = {}
        self._per_address: dict[str, int] = {}  # open connections by host (under counts.lock)
        self._refusals_logged: dict[str, tuple[float, int]] = {}  # host -> when last logged, refusals since
        self._draining = threading.Event()
        self._drained = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = LISTEN_BACKLOG

        try:
            self._server = Server((host, port), Handler)
        except OSError as exc:
            raise SplitnnError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None
        bound_host, bound_port = self._server.server_address[:2]
        assert isinstance(bound_host, str)  # the bound socket's name: an AF_INET(6) host is text
        self.address = (bound_host, bound_port)

    @classmethod
    def from_plan(cls, outdir: str | Path, **options: Any) -> ModelServer:
        """The server of the plan in `outdir`: its server part (every kept cut's, for an adaptive plan; the inputs
        echoed back where the part is empty), the codecs it decodes with and the one it answers in, loaded before
        the first frame comes. `options`: the constructor's others (host, port, token, tls, limits, spin, log)."""
        warm_up(plan_codec_names(outdir))
        return cls(server_models(outdir) or None, codecs=plan_codecs(outdir), reply_codec=plan_reply_codec(outdir),
                   **options)

    def _graph(self, model: Path, threads: int | None, spin: bool) -> _Graph:
        """One server graph's session, its names, and its batcher when batching is asked for and it takes a batch."""
        session = create_session(model, threads=threads, spin=spin)
        graph = _Graph(session, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if self.limits.max_batch > 1:
            check = batchable_session(model, session, threads=threads, spin=spin)
            if check.session is None:
                self.log(f"{model.name}: one request at a time: {check.reason}")
            else:
                graph.batcher = Batcher(check.session, graph.inputs, graph.outputs, self.limits.max_batch,
                                        self.limits.max_wait_s, lambda feeds: session.run(graph.outputs, feeds),
                                        senders=lambda: self.counts.open)
        return graph

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(tensors) in ({PROBE_TENSOR}, {DEVICE_NAME_TENSOR}):
            return {}  # a device measuring the link, or naming itself: an empty answer goes back
        if self.session is None:
            return tensors
        graph = self.graphs[0]
        if len(self.graphs) > 1:  # the graph of the cut the device chose: the one that reads what it sent
            graph = next((g for g in self.graphs if set(g.inputs) == set(tensors)), self.graphs[0])
        missing = [n for n in graph.inputs if n not in tensors]
        if missing:
            raise ProtocolError(f"request lacks input(s) {', '.join(missing)} (expected {', '.join(graph.inputs)})",
                                STATUS_BAD_INPUT)
        feeds = {n: tensors[n] for n in graph.inputs}
        values = graph.batcher.run(feeds) if graph.batcher is not None else graph.session.run(graph.outputs, feeds)
        return dict(zip(graph.outputs, values))

    @property
    def batch_counts(self) -> list[BatchCounts]:
        """Per server graph that batches, how its session runs went."""
        return [g.batcher.counts for g in self.graphs if g.batcher is not None]

    def _authenticated(self, sock: socket.socket) -> bool:
        """With a token: challenge the device, and refuse it (one error frame, a log line) unless it answers right
        within AUTH_TIMEOUT_S (runtime/auth.py)."""
        if self.token is None:
            return True
        peer = _peer(sock)  # read now: a peer that resets has no address any more
        reason = demand_proof(sock, self.token)
        if reason is None:
            return True
        self.log(f"refused {peer}: {reason}")
        held = "does not hold this server's token" if reason == WRONG_ANSWER else "did not prove it holds the token"
        self._refuse(sock, Frame(ERROR, 0, STATUS_UNAUTHORIZED, message=f"authentication failed: the device {held} "
                                 f"({reason}); give it the file the server was started with as --token-file"))
        return False

    def _refuse(self, sock: socket.socket, frame: Frame, linger_s: float = REFUSAL_LINGER_S) -> None:
        """Send `frame` (an error) and close, reading and dropping what the peer still sends until it closes (at
        most `linger_s`, REFUSAL_DRAIN_BYTES): closing with unread bytes would send a reset, which discards the
        frame on the peer's side before it is read (a device that sent its request right after its answer to the
        challenge then saw only `Connection reset by peer`)."""
        with contextlib.suppress(OSError):
            send_frame(sock, frame)
            socket.socket.shutdown(sock, socket.SHUT_WR)  # the plain socket's, also under TLS: the peer reads an end
            deadline, drained = time.monotonic() + linger_s, 0
            while drained < REFUSAL_DRAIN_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                drained += len(chunk)
        with contextlib.suppress(OSError):
            sock.close()

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

    def _admitted(self, sock: socket.socket, address: str) -> bool:
        """Count the connection in, or turn it away (an error frame, a log line at most every REFUSAL_LOG_EVERY_S
        per address) at max_connections, or at max_per_address connections from its address."""
        limit, per_address = self.limits.max_connections, self.limits.max_per_address
        log, since = False, 0
        with self.counts.lock:
            # An address at its share is refused for that first, even when the server is full too: it is the cause.
            crowded = per_address is not None and self._per_address.get(address, 0) >= per_address
            busy = not crowded and limit is not None and self.counts.open >= limit
            if busy:
                self.counts.refused_busy += 1
            elif crowded:
                self.counts.refused_address += 1
            else:
                self.counts.open += 1
                self.counts.connections += 1
                self._per_address[address] = self._per_address.get(address, 0) + 1
            if busy or crowded:
                now = time.monotonic()
                if len(self._refusals_logged) > 10_000:  # a flood from many addresses: forget who was logged when
                    self._refusals_logged.clear()
                logged_at, since = self._refusals_logged.get(address, (-REFUSAL_LOG_EVERY_S, 0))
                log = now - logged_at >= REFUSAL_LOG_EVERY_S
                self._refusals_logged[address] = (now, 0) if log else (logged_at, since + 1)
        if not (busy or crowded):
            return True
        why = (f"--max-connections {limit} reached" if busy
               else f"--max-per-address {per_address} reached for {address}")
        if log:
            more = f" ({since} more refused since the last line)" if since else ""
            self.log(f"refused {_peer(sock)}: {why}{more}")
        message = (f"the server is at its {limit} connections: try again later" if busy else
                   f"the server already holds {per_address} connections from {address}: close some, or try again later")
        self._refuse(sock, Frame(ERROR, 0, STATUS_BUSY, message=message), linger_s=BUSY_LINGER_S)
        return False

    def _handle(self, plain: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a peer that already reset: it is refused below, or its reads fail
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = _address(plain)
        if self._draining.is_set() or not self._admitted(plain, host):
            return
        try:
            sock = self._encrypted(plain)
            if sock is not None and self._authenticated(sock):
                sock.settimeout(self.limits.idle_timeout_s)
                address = _peer(sock).rpartition(":")[0]
                connection = _Connection(sock, self.counts.device(address, address))
                with self.counts.lock:
                    self._connections[id(connection)] = connection
                    connection.device.connections += 1
                try:
                    self._serve_connection(connection)
                finally:
                    with self.counts.lock:
                        del self._connections[id(connection)]
                    self.log(f"closed a connection of {connection.device.line()}")
        finally:
            with self.counts.lock:
                self.counts.open -= 1
                left = self._per_address.pop(host, 1) - 1
                if left:
                    self._per_address[host] = left

    def _next_frame(self, connection: _Connection) -> Frame | None:
        """The connection's next request frame, marked busy; None when the connection is done with. A frame that
        breaks the protocol is answered with an error frame here (and closes the connection when its boundaries are
        lost)."""
        sock = connection.sock
        while True:
            try:
                frame = read_frame(sock, self.max_frame_bytes, self.codecs, self.limits.idle_timeout_s)
            except ConnectionClosed:
                return None
            except FrameTooSlow:
                self.log(f"closed {_peer(sock)}: a frame took longer than {self.limits.idle_timeout_s:g} s to arrive")
                return None
            except socket.timeout:
                self.log(f"closed {_peer(sock)}: nothing for {self.limits.idle_timeout_s:g} s")
                return None
            except ProtocolError as exc:
                self.counts.add(False, connection.device)
                try:
                    send_frame(sock, Frame(ERROR, exc.request_id, exc.status, message=str(exc)))
                except OSError:
                    return None
                if not exc.resumable:  # frame boundaries lost: nothing more can be read reliably
                    sock.close()
                    return None
                continue
            except OSError:
                return None
            with self.counts.lock:
                connection.busy = True
            if frame.kind == REQUEST:
                return frame
            self.counts.add(False, connection.device)
            connection.busy = False
            with contextlib.suppress(OSError):
                send_frame(sock, Frame(ERROR, frame.request_id, STATUS_BAD_FRAME, message="expected a request frame"))

    def _serve_connection(self, connection: _Connection) -> None:
        """Answer the connection's frames until it closes, breaks the protocol beyond repair, idles out, or the
        server drains."""
        while not self._draining.is_set():
            frame = self._next_frame(connection)
            if frame is None:
                return
            naming = set(frame.tensors) == {DEVICE_NAME_TENSOR}  # not a request to count: who sends the next ones
            if naming:
                self._name_device(connection, frame)
            start = time.perf_counter()
            ok = False
            try:
                outputs = self.run(frame.tensors)
                reply = Frame(RESPONSE, frame.request_id, server_s=time.perf_counter() - start, tensors=outputs,
                              decode_s=frame.read_decode_s)
                ok = True
            except ProtocolError as exc:
                reply = Frame(ERROR, frame.request_id, exc.status, message=str(exc))
            except Exception as exc:  # onnxruntime rejects the tensors (dtype, shape): the device's mistake
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                reply = Frame(ERROR, frame.request_id, STATUS_FAILED, message=f"the server part failed: {first}")
            data = encode_frame(reply, self.reply_codec)
            if not naming:  # counted before the device can see the answer
                self.counts.add(ok, connection.device, frame.wire_bytes, len(data), reply.server_s)
            try:
                connection.sock.sendall(data)
            except OSError:
                return
            finally:
                connection.busy = False

    def _name_device(self, connection: _Connection, frame: Frame) -> None:
        """A device's name for its counters (DEVICE_NAME_TENSOR: UTF-8 bytes, at most DEVICE_NAME_MAX_BYTES)."""
        raw = frame.tensors[DEVICE_NAME_TENSOR].tobytes()[:DEVICE_NAME_MAX_BYTES]
        before = connection.device
        name = raw.decode("utf-8", errors="replace").strip() or before.address
        connection.device = self.counts.device(name, before.address)
        if connection.device is before:
            return
        with self.counts.lock:  # the connection was counted for its address until now
            before.connections -= 1
            connection.device.connections += 1
            if not (before.connections or before.ok or before.errors):
                del self.counts.devices[before.name]

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Stop taking connections, close the idle ones, let the requests in flight be answered, then return
        (True when all were, within `timeout_s`). What SIGTERM does to `splitnn serve`. Not from the thread that
        runs serve_forever, which this stops."""
        with self.counts.lock:
            self._draining.set()
            in_flight = sum(c.busy for c in self._connections.values())
            idle = [c.sock for c in self._connections.values() if not c.busy]
        self.log(f"draining: no new connections; {in_flight} request(s) in flight, {len(idle)} idle connection(s) "
                 "closed")
        self._server.shutdown()
        self._server.server_close()  # a device that tries now is refused at once, not left waiting
        for sock in idle:  # their reads end; a reply still being written goes out (only the read side is shut)
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RD)  # the plain socket's, also under TLS
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.counts.lock:
                if not any(c.busy for c in self._connections.values()):
                    break
            time.sleep(0.01)
        with self.counts.lock:
            left = sum(c.busy for c in self._connections.values())
        self._drained.set()
        return left == 0

    def wait_drained(self, timeout_s: float | None = None) -> bool:
        """Wait until a drain that was started has ended."""
        return self._drained.wait(timeout_s)

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.1)

    def start(self) -> "ModelServer":
        """Serve on a background thread."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if not self._draining.is_set():
            self._server.shutdown()
        self._server.server_close()
        for graph in self.graphs:
            if graph.batcher is not None:
                graph.batcher.close()

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main(argv: list[str]) -> None:
    """`python -m splitnn.onnxsplit.runtime.server MODEL|- [--port N] [--no-spin] [--plan OUTDIR] [--tls-cert C --tls-key K]`:
    what run-bench starts as its server process (--plan: the folder whose calibrated codecs it decodes with, and
    whose reply codec it answers in).

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
    reply_codec = plan_reply_codec(argv[argv.index("--plan") + 1]) if "--plan" in argv else None
    warm_up(plan_codec_names(argv[argv.index("--plan") + 1]) if "--plan" in argv else ())
    server = ModelServer(model, port=port, spin="--no-spin" not in argv, codecs=codecs, tls=tls, reply_codec=reply_codec)
    print(f"listening {server.address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])

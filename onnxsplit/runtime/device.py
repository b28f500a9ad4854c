"""The device side: run the device part, send the tensors at the cut, wait for the server's answer.

Every request is timed by stage:
- device_s: the device part's compute as a board would take it: the time on
  this host times `slowdown`, or at least `board_s` (a real board is much
  slower than this host; the extra time is slept, so the link and the server
  see the same pacing a board would give them). run-bench sets `board_s` to
  what the device profile predicts for the part (measure/emulated_board.py);
- encode_s: serialising the tensors into a frame;
- transfer_s: from the first byte sent to the answer received, less the
  server's compute and decode times, which the answer carries, and this
  side's decode (a new connection's handshake is not in it: it is no time the
  bytes spent on the wire; the server's encoding of its answer is);
- server_s: the server part's compute, as the server measured it;
- decode_s: the server decoding the request's tensors (as it measured it) and
  this side decoding the answer's (an emulated board: at least its predicted
  time);
- e2e_s: everything, from the input to the decoded outputs.
"""
from __future__ import annotations

import itertools
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import read_vertical_plan
from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.specs import Codecs, warm_up
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.runtime.auth import ANSWER, HANDSHAKE_MAX_BYTES, NONCE, answer
from splitnn.onnxsplit.runtime.wire import (
    AUTH,
    CHALLENGE,
    DEFAULT_MAX_FRAME_BYTES,
    DEVICE_NAME_MAX_BYTES,
    DEVICE_NAME_TENSOR,
    ERROR,
    REQUEST,
    RESPONSE,
    STATUS_UNAUTHORIZED,
    ConnectionClosed,
    Frame,
    ProtocolError,
    encode_frame,
    read_frame,
    send_frame,
)


@dataclass(frozen=True)
class RequestResult:
    request_id: int
    ok: bool
    error: str
    device_s: float
    encode_s: float
    transfer_s: float
    server_s: float
    e2e_s: float
    bytes_up: int
    bytes_down: int
    outputs: dict[str, np.ndarray]
    decode_s: float = 0.0  # the server decoding the request's tensors, and the device the answer's


class Refused(SplitnnError):
    """The server refused this device: it holds a token (serve --token-file) and the device holds another one, or
    none. No retry helps; the device's options must change. DeviceClient.try_exchange raises it rather than
    returning a failed request, so that an adaptive device never takes it for a link that is down."""

    def __init__(self, server: tuple[str, int], token_given: bool) -> None:
        where = f"the server at {server[0]}:{server[1]}"
        super().__init__(
            f"{where} refused this device's token: give --token-file the same file the server was started with"
            if token_given else
            f"{where} asks for a token (it was started with --token-file) and refused this device: give the same "
            "--token-file here")


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SplitnnError(f"server address '{text}' must be HOST:PORT, e.g. 127.0.0.1:9000")
    return host, int(port)


class DeviceSide(Protocol):
    """What DeviceClient runs on the device: a plan folder's DevicePart, or what stands in for one (the whole
    model, nothing, an adaptive plan's kept cut). Its `sends`, `keeps` and `codec` are read where it has them."""

    server_empty: bool

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class DevicePart:
    """The device part of a plan folder (the .ort file when there is one); empty when all runs on the server."""

    def __init__(self, outdir: str | Path, threads: int | None = None, spin: bool = True) -> None:
        outdir = Path(outdir)
        self.folder = outdir
        self.plan = read_vertical_plan(outdir)
        self.plan.check_artifacts(outdir, "device")
        parts = self.plan.parts
        self.inputs: list[str] = list(parts.device.inputs if not parts.device.empty else parts.server.inputs)
        self.outputs: list[str] = list(parts.device.outputs) if not parts.device.empty else self.inputs
        device_file = self.plan.device_file
        self.file = None if parts.device.empty or device_file is None else outdir / device_file
        if self.file is not None and not self.file.is_file():
            raise SplitnnError(f"the plan's device part '{self.file}' is missing: copy the whole plan folder, or "
                               "partition again")
        # All on the device: nothing is sent, the device part's outputs are the answer.
        self.server_empty: bool = parts.server.empty
        # How the tensors travel (partition --codec); the server decodes by the name each tensor carries.
        self.codec: Codecs = self.plan.codec.codecs() if self.plan.codec is not None else Raw()
        warm_up(self.plan.codec_names)
        # Only what the server part reads is sent; model outputs computed here stay here and join its answer.
        self.sends: list[str] = list(parts.server.inputs)
        self.keeps: list[str] = [name for name in self.outputs if name in self.plan.outputs]
        overrides = None
        if self.file is not None and self.plan.device_ort_weights_from_blob and self.file.suffix == ".ort":
            # The .ort predates a weights update: the weights it holds as they were come from the blob
            # (VerticalPlanFile.device_ort_weights_from_blob, device_ort_folded).
            from splitnn.onnxsplit.artifacts.part_files import blob_initializers

            overrides = blob_initializers(outdir / (self.plan.artifacts.device_model or ""),
                                          leave_out=self.plan.device_ort_folded or ())
        self.session = (create_session(self.file, threads=threads, spin=spin, initializers=overrides)
                        if self.file is not None else None)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            return {n: feeds[n] for n in self.inputs}
        return dict(zip(self.outputs, self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})))


class DeviceClient:
    """Runs the device part and talks to a server (directly, or through a LinkRelay)."""

    def __init__(self, part: DeviceSide, server: tuple[str, int], *, slowdown: float = 1.0, board_s: float = 0.0,
                 timeout_s: float = 30.0, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, encode_board_s: float = 0.0,
                 token: bytes | None = None, tls: ssl.SSLContext | None = None, name: str | None = None,
                 reply_decode_extra_s: float = 0.0) -> None:
        self.part = part
        self.server = server
        self.slowdown = slowdown
        self.board_s = board_s
        self.encode_board_s = encode_board_s  # the emulated board's encoding: this host's times `slowdown`, or at least this
        # What the emulated board takes to decode a coded answer (partition --reply-codec) beyond this host's time.
        self.reply_decode_extra_s = reply_decode_extra_s
        self.token = token  # the server's shared token: every new connection answers its challenge (runtime/auth.py)
        self.tls = tls  # encrypt every connection, the server's certificate checked (runtime/tls.py)
        self.name = name  # announced on every connection, for the server's per-device counters
        self.timeout_s = timeout_s
        self.max_frame_bytes = max_frame_bytes
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        # Takes a connection whose request timed out, with the request's id: its answer may still come, and carries
        # the server's time (an adaptive device reads it aside). None: the connection is closed.
        self.on_late: Callable[[socket.socket, int], None] | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection(self.server, timeout=self.timeout_s)
            except OSError as exc:
                raise SplitnnError(
                    f"cannot reach the server at {self.server[0]}:{self.server[1]} ({exc.strerror or exc}): "
                    "start it with `splitnn serve OUTDIR --port N`"
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self._tls_handshake(sock)
            if self.token is not None:
                self._answer_challenge(sock, self.token)
            if self.name:
                self._announce(sock, self.name)
            self._sock = sock
        return self._sock

    def _tls_handshake(self, sock: socket.socket) -> socket.socket:
        assert self.tls is not None
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.server[0])
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise SplitnnError(f"the server at {self.server[0]}:{self.server[1]} is not trusted ({exc.verify_message}): "
                               "give its CA (or its self-signed cert.pem) as --tls-ca, and connect by a name the "
                               "certificate holds") from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise SplitnnError(f"TLS with {self.server[0]}:{self.server[1]} failed ({exc}): is it served with "
                               "--tls-cert?") from None

    def _answer_challenge(self, sock: socket.socket, token: bytes) -> None:
        """Prove `token` on a new connection: the server's nonce in, its HMAC out (runtime/auth.py)."""
        try:
            frame = read_frame(sock, HANDSHAKE_MAX_BYTES)
        except socket.timeout:
            sock.close()
            raise SplitnnError(f"the server at {self.server[0]}:{self.server[1]} sent no challenge in {self.timeout_s:g} s: "
                               "it was started without --token-file; drop --token-file here, or give it there") from None
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            sock.close()
            raise SplitnnError(f"the server closed the connection before authenticating ({exc})") from None
        nonce = frame.tensors.get(NONCE) if frame.kind == CHALLENGE else None
        if frame.kind == ERROR:  # turned away before any challenge (serve --max-connections, --max-per-address)
            sock.close()
            raise SplitnnError(f"the server at {self.server[0]}:{self.server[1]} turned this device away: "
                               f"{frame.message}")
        if nonce is None:
            sock.close()
            raise SplitnnError("the server did not send a challenge: it was started without --token-file")
        send_frame(sock, Frame(AUTH, 0, tensors={ANSWER: np.frombuffer(answer(token, nonce.tobytes()), np.uint8)}))

    def _announce(self, sock: socket.socket, device_name: str) -> None:
        """Name this device `device_name` on a new connection (a request of DEVICE_NAME_TENSOR alone, answered
        empty): the server counts its requests under the name (runtime/server_counts.py)."""
        name = np.frombuffer(device_name.encode("utf-8")[:DEVICE_NAME_MAX_BYTES], np.uint8)
        try:
            send_frame(sock, Frame(REQUEST, 0, tensors={DEVICE_NAME_TENSOR: name}))
            reply = read_frame(sock, HANDSHAKE_MAX_BYTES)
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            sock.close()
            raise SplitnnError(f"the server at {self.server[0]}:{self.server[1]} closed the connection at once ({exc})"
                               ) from None
        refused = self._refusal(reply)
        if refused is not None:
            sock.close()
            raise refused

    def _refusal(self, reply: Frame) -> Refused | None:
        """The refusal a frame says (a challenge this device cannot answer, or the server's verdict on its answer);
        None for any other frame."""
        if reply.kind == CHALLENGE or (reply.kind == ERROR and reply.status == STATUS_UNAUTHORIZED):
            return Refused(self.server, self.token is not None)
        return None

    def set_timeout(self, seconds: float) -> None:
        """How long the next answers may take (an adaptive device gives each request what its deadline leaves)."""
        self.timeout_s = seconds
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _abandon(self, request_id: int) -> None:
        """Never use the connection again after request `request_id` timed out: it goes to `on_late`, else closed."""
        sock, self._sock = self._sock, None
        if sock is not None and self.on_late is not None:
            self.on_late(sock, request_id)
        elif sock is not None:
            sock.close()

    def compute(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """The device part's outputs and its compute time as the emulated board takes it (see the module doc)."""
        start = time.perf_counter()
        tensors = self.part.run(feeds)
        measured = time.perf_counter() - start
        board_s = max(measured * self.slowdown, self.board_s)
        if board_s > measured:
            time.sleep(board_s - measured)
        return tensors, board_s

    def payload(self, tensors: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What goes up: the tensors the server part reads (all of them for a part that does not say), a model
        input it reads forwarded as it came."""
        sends = getattr(self.part, "sends", None)
        return tensors if sends is None else {name: tensors[name] if name in tensors else feeds[name] for name in sends}

    def kept(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model outputs the device part computed: they are part of the answer without travelling."""
        return {name: tensors[name] for name in getattr(self.part, "keeps", ())}

    def request_frame(self, tensors: dict[str, np.ndarray], request_id: int) -> bytes:
        """A request's bytes, the tensors in the plan's codec (partition --codec; plain .npy where it has none), in the
        time the emulated board takes to encode them."""
        start = time.perf_counter()
        data = encode_frame(Frame(REQUEST, request_id, tensors=tensors), getattr(self.part, "codec", None))
        measured = time.perf_counter() - start
        board_s = max(measured * self.slowdown, self.encode_board_s)
        if board_s > measured:
            time.sleep(board_s - measured)
        return data

    def exchange(self, tensors: dict[str, np.ndarray], request_id: int | None = None) -> RequestResult:
        """Encode, send, wait; the device compute is not included (see `request`)."""
        request_id = request_id if request_id is not None else next(self._ids)
        start = time.perf_counter()
        data = self.request_frame(tensors, request_id)
        encoded = sent = time.perf_counter()
        try:
            reply, sent = self._send(data)
        except socket.timeout:
            self._abandon(request_id)  # a late answer would arrive on the next request: start a fresh connection
            return self._failed(request_id, f"timed out after {self.timeout_s:g} s waiting for the server", start, encoded,
                                len(data), sent)
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            self._drop()
            return self._failed(request_id, f"connection failed: {exc}", start, encoded, len(data), sent)
        decode_s = reply.decode_s + reply.read_decode_s
        if self.reply_decode_extra_s and reply.kind == RESPONSE:
            time.sleep(self.reply_decode_extra_s)
            decode_s += self.reply_decode_extra_s
        received = time.perf_counter()
        refused = self._refusal(reply)
        if refused is not None:
            self._drop()
            raise refused
        if reply.kind == ERROR or reply.request_id != request_id:
            message = reply.message if reply.kind == ERROR else f"answer to request {reply.request_id}, expected {request_id}"
            return self._failed(request_id, f"server error: {message}", start, encoded, len(data), sent)
        return RequestResult(request_id, True, "", 0.0, encoded - start, received - sent - reply.server_s - decode_s,
                             reply.server_s, time.perf_counter() - start, len(data), reply.wire_bytes, reply.tensors,
                             decode_s)

    def _send(self, data: bytes) -> tuple[Frame, float]:
        """Send a request and read its answer, and when its bytes went out (a new connection's handshake is not wire
        time). A kept connection the server closed meanwhile (serve --idle-timeout) is opened again, once, when it
        failed before any byte of an answer came."""
        reused = self._sock is not None
        sock = self._connect()
        sent = time.perf_counter()
        try:
            sock.sendall(data)
            return read_frame(sock, self.max_frame_bytes), sent
        except (ConnectionClosed, BrokenPipeError, ConnectionResetError) as exc:
            if not reused or (isinstance(exc, ConnectionClosed) and exc.partial):
                raise
            self._drop()
            sock = self._connect()
            sent = time.perf_counter()
            sock.sendall(data)
            return read_frame(sock, self.max_frame_bytes), sent

    def try_exchange(self, tensors: dict[str, np.ndarray]) -> RequestResult:
        """`exchange`, where a server that cannot be reached is a failed result, not an error (an adaptive
        device then answers alone, and tries the server again later); a server that refuses this device's token
        still raises Refused: no later try would differ."""
        start = time.perf_counter()
        try:
            return self.exchange(tensors)
        except Refused:
            raise
        except SplitnnError as exc:
            return self._failed(next(self._ids), str(exc), start, start, 0)

    def _failed(self, request_id: int, error: str, start: float, encoded: float, nbytes: int,
                sent: float | None = None) -> RequestResult:
        """A request with no answer; its transfer time runs from when its bytes went out (`sent`, after any
        connection setup), else from the end of encoding."""
        now = time.perf_counter()
        return RequestResult(request_id, False, error, 0.0, encoded - start, now - (sent or encoded), 0.0, now - start, nbytes,
                             0, {})

    def request(self, feeds: dict[str, np.ndarray]) -> RequestResult:
        """One whole request: device compute, then the exchange with the server."""
        start = time.perf_counter()
        tensors, device_s = self.compute(feeds)
        if self.part.server_empty:
            return RequestResult(next(self._ids), True, "", device_s, 0.0, 0.0, 0.0, time.perf_counter() - start, 0, 0, tensors)
        result = self.exchange(self.payload(tensors, feeds))
        outputs = {**self.kept(tensors), **result.outputs} if result.ok else result.outputs
        return RequestResult(result.request_id, result.ok, result.error, device_s, result.encode_s, result.transfer_s,
                             result.server_s, time.perf_counter() - start, result.bytes_up, result.bytes_down, outputs,
                             result.decode_s)

    def close(self) -> None:
        self._drop()

"""Who may use a server (issue 15, item 1): a shared token, never sent, proven per connection by an HMAC.

With a token, the server's first frame on a connection is a CHALLENGE carrying NONCE_BYTES fresh random bytes;
the device answers with an AUTH frame carrying HMAC-SHA256(token, CONTEXT + nonce), and only then may it send
requests. A wrong or missing answer gets one error frame (STATUS_UNAUTHORIZED) and the connection closes. The
nonce is new on every connection, so an answer seen on the network opens no other. The standard library's hmac
and secrets do all of it; comparing with hmac.compare_digest takes the same time however many bytes match.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.wire import (
    AUTH,
    CHALLENGE,
    ERROR,
    ConnectionClosed,
    Frame,
    ProtocolError,
    read_frame,
    send_frame,
)

NONCE_BYTES = 32
CONTEXT = b"splitnn-auth-1:"  # what the HMAC covers besides the nonce: a MAC for this protocol and no other
NONCE, ANSWER = "nonce", "hmac"  # the tensor each frame carries (uint8)
HANDSHAKE_MAX_BYTES = 4096  # a challenge or an answer is a few dozen bytes: a larger frame is no answer


def read_token(path: str | Path) -> bytes:
    """The token in a file (surrounding whitespace dropped); missing, unreadable or empty is one clear error."""
    try:
        token = Path(path).read_bytes().strip()
    except OSError as exc:
        raise SplitnnError(f"--token-file '{path}' cannot be read ({exc.strerror or exc}): give a file holding the "
                           "shared token (e.g. made with `python -c \"import secrets; print(secrets.token_hex(32))\"`)") from None
    if not token:
        raise SplitnnError(f"--token-file '{path}' is empty: put the shared token in it")
    return token


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def answer(token: bytes, nonce: bytes) -> bytes:
    return hmac.new(token, CONTEXT + nonce, hashlib.sha256).digest()


def answer_is_right(token: bytes, nonce: bytes, given: bytes) -> bool:
    return hmac.compare_digest(answer(token, nonce), given)


def is_loopback(host: str) -> bool:
    """Whether `host` is an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


AUTH_TIMEOUT_S = 10.0  # how long a peer has to answer the challenge
OTHER_FRAME = "something else than an answer to the challenge (a device without the token?)"
WRONG_ANSWER = "a wrong answer to the challenge"


def demand_proof(sock: socket.socket, token: bytes) -> str | None:
    """Challenge the peer on a new connection to prove `token`; None where it answered right within
    AUTH_TIMEOUT_S, else why not (WRONG_ANSWER, OTHER_FRAME, or no answer)."""
    nonce = new_nonce()
    try:
        send_frame(sock, Frame(CHALLENGE, 0, tensors={NONCE: np.frombuffer(nonce, np.uint8)}))
        sock.settimeout(AUTH_TIMEOUT_S)
        frame = read_frame(sock, HANDSHAKE_MAX_BYTES)
        sock.settimeout(None)
    except ProtocolError:
        return OTHER_FRAME
    except (ConnectionClosed, OSError) as exc:
        return f"no answer to the challenge ({exc})"
    given = frame.tensors.get(ANSWER) if frame.kind == AUTH else None
    if given is not None and answer_is_right(token, nonce, given.tobytes()):
        return None
    return WRONG_ANSWER if frame.kind == AUTH else OTHER_FRAME


def give_proof(sock: socket.socket, token: bytes, peer: str, timeout_s: float = AUTH_TIMEOUT_S) -> None:
    """Answer the challenge of the peer `peer` (HOST:PORT, for the message) on a new connection; one line where it
    sends none or closes."""
    try:
        sock.settimeout(timeout_s)
        frame = read_frame(sock, HANDSHAKE_MAX_BYTES)
        sock.settimeout(None)
    except socket.timeout:
        raise SplitnnError(f"{peer} sent no challenge in {timeout_s:g} s: it was started without --token-file (drop "
                           "--token-file here, or give it there), it expects TLS, or it is busy with another "
                           "connection") from None
    except (ConnectionClosed, ProtocolError, OSError) as exc:
        raise SplitnnError(f"{peer} closed the connection before authenticating ({exc})") from None
    if frame.kind == ERROR:
        raise SplitnnError(f"{peer} turned this connection away: {frame.message}")
    nonce = frame.tensors.get(NONCE) if frame.kind == CHALLENGE else None
    if nonce is None:
        raise SplitnnError(f"{peer} did not send a challenge: it was started without --token-file")
    try:
        send_frame(sock, Frame(AUTH, 0, tensors={ANSWER: np.frombuffer(answer(token, nonce.tobytes()), np.uint8)}))
    except OSError as exc:
        raise SplitnnError(f"{peer} closed the connection before the token's proof reached it ({exc})") from None

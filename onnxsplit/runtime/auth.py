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
from pathlib import Path

from splitnn.onnxsplit.core.errors import SplitnnError

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

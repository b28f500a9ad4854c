"""Encryption on the wire (issue 15, item 2): TLS from the standard library's ssl, 1.2 or later.

The server loads a certificate and its key (`serve --tls-cert C --tls-key K`); the device trusts a CA file
(`device --tls-ca C`; for a self-signed certificate, the certificate itself) and checks the server's name
against it, as any TLS client does. `serve --self-signed DIR` writes a pair for trying it out, made with the
`cryptography` package (the standard library cannot make certificates): valid for a year, for localhost,
127.0.0.1 and the names given. Every file problem is one clear error before anything is served.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from splitnn.onnxsplit.core.errors import SplitnnError

CERT_FILE, KEY_FILE = "cert.pem", "key.pem"


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise SplitnnError(f"{flag} '{path}' does not exist: give the PEM file (or make a pair with --self-signed DIR)")
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        what = "does not match its key" if "KEY_VALUES_MISMATCH" in str(exc) else f"cannot be loaded ({exc.reason or exc})"
        raise SplitnnError(f"the certificate '{cert}' {what}: give the key it was made with") from None
    return context


def client_context(ca: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the certificate and the server's name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise SplitnnError(f"--tls-ca '{ca}' cannot be read as PEM certificates ({getattr(exc, 'strerror', None) or exc}): "
                           "give the server's CA (for a self-signed pair, its cert.pem)") from None
    return context


def write_self_signed(folder: str | Path, names: Sequence[str] = ()) -> tuple[Path, Path]:
    """A self-signed certificate and its key in `folder` (cert.pem, key.pem), for localhost, 127.0.0.1 and `names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "splitnn server")])
    alternatives: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_bytes_atomic(folder / KEY_FILE, private, mode=0o600)  # never readable by others, not even for a moment
    return folder / CERT_FILE, folder / KEY_FILE

"""`splitnn serve`: the server part of a plan folder, answering devices over TCP."""
from __future__ import annotations

import click

from splitnn.cli.render import stderr


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other machines).")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="A file holding a shared token: a device must prove it holds the same one (an HMAC of a fresh "
                   "challenge; the token never crosses the network).")
@click.option("--insecure", is_flag=True, help="Listen on an address other machines reach without --token-file "
                                               "(anyone who reaches the port is served).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Encrypt with TLS: the server's certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="With --tls-cert: its private key (PEM).")
@click.option("--self-signed", "self_signed", type=click.Path(file_okay=False), metavar="DIR",
              help="Write a self-signed certificate and key into DIR (cert.pem, key.pem; for localhost, 127.0.0.1 and "
                   "--host) and serve with them; a device trusts DIR/cert.pem as its --tls-ca.")
@click.option("--max-connections", default=64, show_default=True, type=click.IntRange(1),
              help="Devices connected at once; one more is turned away with an error frame.")
@click.option("--idle-timeout", default=300.0, show_default=True, type=click.FloatRange(0, min_open=True), metavar="S",
              help="Close a connection that sends nothing (or a frame that slowly) for S seconds; its device "
                   "reconnects on its next request.")
def serve(outdir: str, host: str, port: int, token_file: str | None, insecure: bool, tls_cert: str | None,
          tls_key: str | None, self_signed: str | None, max_connections: int, idle_timeout: float) -> None:
    """Serve the server part of the plan in OUTDIR until interrupted.

    \b
    Examples:
      splitnn serve out/vgg16 --host 0.0.0.0 --port 9000 --token-file token.txt
      splitnn device out/vgg16 --server 192.168.1.20:9000 --random 10 --token-file token.txt
      splitnn serve out/adaptive --host 0.0.0.0 --token-file token.txt     (every kept cut's server graph)
      splitnn serve out/vgg16     (this machine only: 127.0.0.1, no token needed)
      splitnn serve out/vgg16 --host 0.0.0.0 --token-file token.txt --self-signed tls/   (encrypted too)
      splitnn device out/vgg16 --server board-server.local:9000 --random 5 --token-file token.txt --tls-ca tls/cert.pem
    """
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.auth import is_loopback, read_token
    from splitnn.onnxsplit.runtime.server import ModelServer, plan_codecs, server_models

    token = read_token(token_file) if token_file is not None else None
    if token is None and not is_loopback(host):
        if not insecure:
            raise SplitnnError(f"--host {host} lets other machines connect, and without --token-file any of them "
                               "would be served: give --token-file FILE (and the same to each device), or --insecure")
        stderr().print(f"[yellow]warning: serving {host} without a token (--insecure): anyone who reaches the port "
                       "is served[/yellow]")
    tls = _tls(tls_cert, tls_key, self_signed, host)
    models = server_models(outdir)
    if not models:
        raise SplitnnError(f"'{outdir}' puts the whole model on the device: its server part is empty and there is "
                           "nothing to serve (run `splitnn device` alone, or partition with another cut)")
    server = ModelServer(models, host=host, port=port, codecs=plan_codecs(outdir), token=token, log=stderr().print,
                         tls=tls, max_connections=max_connections, idle_timeout_s=idle_timeout)
    what = f" ({len(models)} cuts of an adaptive plan)" if len(models) > 1 else ""
    guarded = (", devices must hold the token" if token is not None else "") + (", TLS" if tls is not None else "")
    stderr().print(f"serving {outdir}{what} on {server.address[0]}:{server.address[1]}{guarded} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        counts = server.counts
        stderr().print(f"served {counts.ok} requests, {counts.errors} errors, {counts.connections} connections "
                       f"({counts.refused_busy} turned away at --max-connections)")


def _tls(cert: str | None, key: str | None, self_signed: str | None, host: str):  # type: ignore[no-untyped-def]
    """The TLS context of --tls-cert/--tls-key or --self-signed DIR (None: plain TCP)."""
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.tls import server_context, write_self_signed

    if self_signed is not None:
        if cert or key:
            raise SplitnnError("--self-signed makes its own certificate: drop --tls-cert and --tls-key")
        cert_path, key_path = write_self_signed(self_signed, [host] if host not in ("0.0.0.0", "::") else [])
        stderr().print(f"wrote {cert_path} and {key_path}: give {cert_path} to each device as --tls-ca")
        return server_context(cert_path, key_path)
    if (cert is None) != (key is None):
        raise SplitnnError("TLS needs both --tls-cert and --tls-key (or --self-signed DIR)")
    return server_context(cert, key) if cert is not None and key is not None else None

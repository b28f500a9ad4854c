"""`splitnn serve`: the server part of a plan folder, answering devices over TCP."""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any

import click

from splitnn.cli.options import OptionGroup, use_groups
from splitnn.cli.render import log_line, stderr


@dataclass(frozen=True)
class Guard:
    """Who may connect (a token) and whether the bytes are encrypted (a TLS context), from the options."""

    host: str
    token: bytes | None
    tls: Any  # ssl.SSLContext | None


def _guard(host: str, token_file: str | None, insecure: bool, tls_cert: str | None, tls_key: str | None,
           self_signed: str | None) -> Guard:
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.auth import is_loopback, read_token

    token = read_token(token_file) if token_file is not None else None
    if token is None and not is_loopback(host):
        if not insecure:
            raise SplitnnError(f"--host {host} lets other machines connect, and without --token-file any of them "
                               "would be served: give --token-file FILE (and the same to each device), or --insecure")
        stderr().print(f"[yellow]warning: serving {host} without a token (--insecure): anyone who reaches the port "
                       "is served[/yellow]")
    return Guard(host, token, _tls(tls_cert, tls_key, self_signed, host))


GUARD = OptionGroup("guard", (
    (("--host", "host"), dict(default="127.0.0.1", show_default=True,
                              help="Address to listen on (0.0.0.0 for other machines).")),
    (("--token-file", "token_file"), dict(
        type=click.Path(dir_okay=False), help="A file holding a shared token: a device must prove it holds the same "
                                              "one (an HMAC of a fresh challenge; the token never crosses the network).")),
    (("--insecure", "insecure"), dict(is_flag=True, help="Listen on an address other machines reach without "
                                                         "--token-file (anyone who reaches the port is served).")),
    (("--tls-cert", "tls_cert"), dict(type=click.Path(dir_okay=False),
                                      help="Encrypt with TLS: the server's certificate (PEM).")),
    (("--tls-key", "tls_key"), dict(type=click.Path(dir_okay=False), help="With --tls-cert: its private key (PEM).")),
    (("--self-signed", "self_signed"), dict(
        type=click.Path(file_okay=False), metavar="DIR",
        help="Write a self-signed certificate and key into DIR (cert.pem, key.pem; for localhost, 127.0.0.1 and --host) "
             "and serve with them; a device trusts DIR/cert.pem as its --tls-ca.")),
), _guard)


def _limits(max_connections: int, max_per_address: int, idle_timeout: float, max_batch: int,
            max_wait_ms: float) -> Any:
    from splitnn.onnxsplit.runtime.server import ServerLimits

    return ServerLimits(max_connections, idle_timeout, max_batch, max_wait_ms / 1e3, max_per_address)


LIMITS = OptionGroup("limits", (
    (("--max-connections", "max_connections"), dict(
        default=64, show_default=True, type=click.IntRange(1),
        help="Devices connected at once; one more is turned away with an error frame.")),
    (("--max-per-address", "max_per_address"), dict(
        default=32, show_default=True, type=click.IntRange(1),
        help="Connections at once from one address (so that one client cannot take every place); one more is "
             "turned away with an error frame. Raise it for many devices behind one NAT.")),
    (("--idle-timeout", "idle_timeout"), dict(
        default=300.0, show_default=True, type=click.FloatRange(0, min_open=True), metavar="S",
        help="Close a connection that sends nothing (or a frame that slowly) for S seconds; its device reconnects on "
             "its next request.")),
    (("--max-batch", "max_batch"), dict(
        default=8, show_default=True, type=click.IntRange(1),
        help="Run up to this many devices' requests in one session call, where the server part takes a batch (checked "
             "at start; otherwise one at a time). 1: one request at a time.")),
    (("--max-wait-ms", "max_wait_ms"), dict(
        default=2.0, show_default=True, type=click.FloatRange(0), metavar="MS",
        help="How long a request waits for others to join its batch.")),
), _limits)


@dataclass(frozen=True)
class StageChoice:
    """serve --stage: which machine's stage of a pipeline plan this is, where it sends on, and how it trusts that."""

    machine: str
    next_address: tuple[str, int]
    next_tls: Any  # ssl.SSLContext | None


def _stage(machine: str | None, next_address: str | None, next_tls_ca: str | None) -> StageChoice | None:
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.device import parse_address
    from splitnn.onnxsplit.runtime.tls import client_context

    if machine is None:
        if next_address is not None or next_tls_ca is not None:
            raise SplitnnError("--next and --next-tls-ca serve one stage of a pipeline plan: add --stage MACHINE")
        return None
    if next_address is None:
        raise SplitnnError(f"--stage {machine} sends its frames on: add --next HOST:PORT (the next stage's serve, or "
                           "for the last stage the source's --answers)")
    return StageChoice(machine, parse_address(next_address), client_context(next_tls_ca) if next_tls_ca else None)


STAGE = OptionGroup("stage", (
    (("--stage", "machine"), dict(metavar="MACHINE", help="Pipeline plans: serve this machine's stage.")),
    (("--next", "next_address"), dict(metavar="HOST:PORT", help=(
        "With --stage: where the frames go on (the next stage's serve --port, or for the last stage the source's "
        "device --answers)."))),
    (("--next-tls-ca", "next_tls_ca"), dict(type=click.Path(dir_okay=False), help=(
        "With --stage: speak TLS to --next, trusting this CA file (its --self-signed DIR/cert.pem)."))),
), _stage)


@click.command(short_help="Serve the server part of the plan in OUTDIR until stopped (Ctrl-C or SIGTERM).")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
@click.option("--drain-timeout", default=30.0, show_default=True, type=click.FloatRange(0), metavar="S",
              help="On SIGTERM, how long to wait for the requests in flight before exiting.")
@use_groups(GUARD, LIMITS, STAGE)
def serve(outdir: str, port: int, drain_timeout: float, guard: Guard, limits: Any, stage: StageChoice | None) -> None:
    """Serve the server part of the plan in OUTDIR until interrupted (Ctrl-C), or until SIGTERM, which stops
    taking connections, answers the requests in flight and exits. Per-device counters are logged as connections
    close and at the end (a device is known by its --name, else its address).

    \b
    Examples:
      splitnn serve out/vgg16 --host 0.0.0.0 --port 9000 --token-file token.txt
      splitnn device out/vgg16 --server 192.168.1.20:9000 --random 10 --token-file token.txt
      splitnn serve out/adaptive --host 0.0.0.0 --token-file token.txt     (every kept cut's server graph)
      splitnn serve out/vgg16     (this machine only: 127.0.0.1, no token needed)
      splitnn serve out/vgg16 --host 0.0.0.0 --token-file token.txt --self-signed tls/   (encrypted too)
      splitnn device out/vgg16 --server board-server.local:9000 --random 5 --token-file token.txt --tls-ca tls/cert.pem
      splitnn serve out/vgg16 --max-batch 16 --max-wait-ms 5     (many devices: batch their requests)
      splitnn serve out/pipe --stage pi --next 10.0.0.9:9000 --host 0.0.0.0 --token-file token.txt
                                                     (a pipeline plan: the pi's stage, sending on to the next)
    """
    from splitnn.onnxsplit.runtime.server import ModelServer, models_to_serve

    if stage is not None:
        _serve_stage(outdir, port, guard, stage)
        return

    models = models_to_serve(outdir)
    host = guard.host
    # Idle onnxruntime threads sleep instead of spinning: a request's network time dwarfs their wake-up, and a
    # spinning server takes the cores from whatever shares the machine.
    server = ModelServer.from_plan(outdir, host=host, port=port, token=guard.token, log=log_line, tls=guard.tls,
                                   limits=limits, spin=False)
    what = f" ({len(models)} cuts of an adaptive plan)" if len(models) > 1 else ""
    shields = ("devices must hold the token; " if guard.token is not None else "") + ("TLS; " if guard.tls else "")
    shields += f"answers in {server.reply_codec.name}; " if server.reply_codec is not None else ""
    batching = f"batches of up to {limits.max_batch}" if server.batch_counts else "one request at a time"
    log_line(f"serving {outdir}{what} on {server.address[0]}:{server.address[1]} ({shields}{batching}; Ctrl-C "
                   "or SIGTERM to stop)")
    draining = _drain_on_sigterm(server, drain_timeout)
    try:
        server.serve_forever()
    finally:
        if draining.is_set():
            server.wait_drained()
        _summary(server)


def _drain_on_sigterm(server: Any, timeout_s: float) -> threading.Event:
    """On SIGTERM, drain the server from another thread (serve_forever's own cannot stop it); the event says it
    was asked."""
    asked = threading.Event()

    def on_sigterm(signum: int, frame: Any) -> None:
        if not asked.is_set():
            asked.set()
            threading.Thread(target=server.drain, args=(timeout_s,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    return asked


def _summary(server: Any) -> None:
    counts = server.counts
    for line in counts.lines():
        log_line(line)
    for batches in server.batch_counts:
        log_line(f"batched: {batches.requests} requests in {batches.runs} session runs (mean "
                       f"{batches.mean_batch:.2f}, largest {batches.largest})")
    log_line(f"served {counts.ok} requests, {counts.errors} errors, {counts.connections} connections "
             f"({counts.refused_busy} turned away at --max-connections, {counts.refused_address} at "
             "--max-per-address)")


def _tls(cert: str | None, key: str | None, self_signed: str | None, host: str):
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


def _serve_stage(outdir: str, port: int, guard: Guard, stage: StageChoice) -> None:
    """One stage of a pipeline plan until Ctrl-C or SIGTERM."""
    from splitnn.onnxsplit.runtime.stage import StageGuard, StageServer

    server = StageServer(outdir, stage.machine, stage.next_address, host=guard.host, port=port,
                         guard=StageGuard(guard.token, guard.tls, stage.next_tls), log=log_line)
    shields = ("peers must hold the token; " if guard.token is not None else "") + ("TLS in; " if guard.tls else "")
    shields += "TLS on; " if stage.next_tls is not None else ""
    log_line(f"serving the stage of {stage.machine} in {outdir} on {server.address[0]}:{server.address[1]}, sending "
             f"on to {stage.next_address[0]}:{stage.next_address[1]} ({shields}Ctrl-C or SIGTERM to stop)")
    signal.signal(signal.SIGTERM, lambda signum, frame: server.close())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()

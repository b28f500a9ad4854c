"""`splitnn device`: run the device part of a plan folder and send its tensors to a server."""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from splitnn.cli.options import OptionGroup, use_groups
from splitnn.cli.render import human_bytes, stderr, stdout


@dataclass(frozen=True)
class _Connection:
    """How the device reaches its server: where, how long it waits, and what it proves (token, TLS)."""

    address: tuple[str, int]
    timeout_s: float
    token: bytes | None
    tls: Any  # ssl.SSLContext or None
    name: str  # for the server's per-device counters


def _connection(address: str, timeout: float, token_file: str | None, tls_ca: str | None, name: str) -> _Connection:
    from splitnn.onnxsplit.runtime.auth import read_token
    from splitnn.onnxsplit.runtime.device import parse_address
    from splitnn.onnxsplit.runtime.tls import client_context

    token = read_token(token_file) if token_file is not None else None
    return _Connection(parse_address(address), timeout, token, client_context(tls_ca) if tls_ca is not None else None,
                       name)


CONNECTION = OptionGroup("link", (
    (("--server", "address"), dict(required=True, metavar="HOST:PORT", help="Where `splitnn serve` listens.")),
    (("--timeout", "timeout"), dict(default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
                                    help="Seconds to wait for each answer.")),
    (("--token-file", "token_file"), dict(
        type=click.Path(dir_okay=False),
        help="The server's shared token (serve --token-file): answers its challenge on each connection.")),
    (("--tls-ca", "tls_ca"), dict(
        type=click.Path(dir_okay=False),
        help="Connect with TLS, trusting this CA file (for `serve --self-signed DIR`: DIR/cert.pem).")),
    (("--name", "name"), dict(default=socket.gethostname, show_default="this host's name",
                              help="How the server's per-device counters know this device.")),
), _connection)


@dataclass(frozen=True)
class _Answers:
    """Where a pipeline plan's source listens for the last stage's answers, and its TLS there (None: plain)."""

    address: tuple[str, int]
    tls: Any  # ssl.SSLContext or None


def _answers(answers_address: str | None, answers_cert: str | None, answers_key: str | None) -> _Answers | None:
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.device import parse_address
    from splitnn.onnxsplit.runtime.tls import server_context

    cert, key = answers_cert, answers_key
    if answers_address is None:
        if cert is not None or key is not None:
            raise SplitnnError("--answers-tls-cert and --answers-tls-key go with --answers HOST:PORT")
        return None
    if (cert is None) != (key is None):
        raise SplitnnError("TLS at the answers needs both --answers-tls-cert and --answers-tls-key")
    return _Answers(parse_address(answers_address), server_context(cert, key) if cert and key else None)


ANSWERS = OptionGroup("answers", (
    (("--answers", "answers_address"), dict(metavar="HOST:PORT", help=(
        "Pipeline plans: where this source listens for the answers (the last stage's serve --next)."))),
    (("--answers-tls-cert", "answers_cert"), dict(type=click.Path(dir_okay=False), help=(
        "Pipeline plans: take the answers in TLS with this certificate (PEM); the last stage trusts it with "
        "--next-tls-ca."))),
    (("--answers-tls-key", "answers_key"), dict(type=click.Path(dir_okay=False), help="With --answers-tls-cert: its key.")),
), _answers)


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="A .npy file for the (single) model input.")
@click.option("--random", "random_count", type=click.IntRange(1), help="Send N random inputs instead.")
@click.option("--deadline", metavar="TIME", help="Adaptive plans: answer every request within TIME (e.g. 900ms), "
                                                 "finishing on the device when the server cannot.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the last answer's outputs (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Per-request timings as JSON.")
@use_groups(CONNECTION, ANSWERS)
def device(outdir: str, input_file: str | None, random_count: int | None, deadline: str | None, output: str | None,
           as_json: bool, link: _Connection, answers: _Answers | None) -> None:
    """Run the device part of OUTDIR and send its tensors to a server.

    On an adaptive plan (partition --adaptive) the device estimates the link
    from its own requests, picks a kept cut per request, and with --deadline
    answers on its own when the server cannot in time.

    \b
    Examples:
      splitnn device out/vgg16 --server 127.0.0.1:9000 --random 5
      splitnn device out/vgg16 --server 10.0.0.2:9000 --input image.npy -o result.npz
      splitnn device out/adaptive --server 10.0.0.2:9000 --random 100 --deadline 900ms
      splitnn device out/vgg16 --server 10.0.0.2:9000 --random 5 --token-file token.txt
      splitnn device out/pipe --server 10.0.0.3:9000 --answers 0.0.0.0:9100 --random 5 --token-file token.txt
                                          (a pipeline plan: this is its source; the last stage sends to :9100)
    """
    from splitnn.cli.options import duration_option_s
    from splitnn.onnxsplit.artifacts.plan_file import plan_strategy
    from splitnn.onnxsplit.core.errors import SplitnnError

    if (input_file is None) == (random_count is None):
        raise SplitnnError("give exactly one of --input FILE.npy or --random N")
    deadline_s = duration_option_s(deadline, "--deadline")
    kind = plan_strategy(outdir)
    if (answers is None) == (kind == "pipeline"):
        raise SplitnnError("a pipeline plan's source needs --answers HOST:PORT (where the last stage sends)" if answers
                           is None else "--answers applies to pipeline plans (splitnn partition --machines)")
    if kind == "pipeline":
        from splitnn.onnxsplit.runtime.auth import is_loopback

        if deadline_s is not None:
            raise SplitnnError("--deadline applies to adaptive plans (splitnn partition --adaptive)")
        assert answers is not None
        if link.token is None and not is_loopback(answers.address[0]):
            raise SplitnnError(f"--answers {answers.address[0]} lets other machines connect, and without --token-file "
                               "any of them could send answers: give --token-file FILE (the same to every stage)")
        outputs = _pipeline(outdir, link, answers, _inputs_of(outdir, input_file, random_count), as_json)
    elif kind == "adaptive":
        outputs = _adaptive(outdir, link, input_file, random_count, deadline_s, as_json)
    elif deadline_s is not None:
        raise SplitnnError("--deadline applies to adaptive plans (splitnn partition --adaptive)")
    else:
        outputs = _split(outdir, link, input_file, random_count, as_json)
    if output is not None and outputs:
        import io

        import numpy as np

        from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic

        buffer = io.BytesIO()
        np.savez(buffer, **outputs)
        write_bytes_atomic(Path(output), buffer.getvalue())


def _inputs(plan: Any, input_file: str | None, random_count: int | None) -> list[dict[str, Any]]:
    """The requests' feeds: the one .npy given, or N random inputs of the plan's shapes."""
    import numpy as np

    from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
    from splitnn.onnxsplit.core.errors import SplitnnError

    if input_file is None:
        return [plan_feeds(plan, seed) for seed in range(random_count or 0)]
    specs = {n: (s.shape, s.dtype) for n, s in plan.inputs.items()}
    if len(specs) != 1:
        raise SplitnnError(f"--input gives one tensor but the model has {len(specs)} inputs: use --random")
    try:
        array = np.load(input_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SplitnnError(f"cannot read '{input_file}' as .npy: {exc}") from None
    name, (shape, dtype) = next(iter(specs.items()))
    if list(array.shape) != list(shape):
        raise SplitnnError(f"'{input_file}' has shape {list(array.shape)}, the model's input '{name}' needs {list(shape)}")
    return [{name: array.astype(dtype)}]


def _split(outdir: str, link: _Connection, input_file: str | None, random_count: int | None,
           as_json: bool) -> dict[str, Any]:
    """A split's device part: every request through the server. Returns the last answer's outputs."""
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart

    part = DevicePart(outdir)
    inputs = _inputs(part.plan, input_file, random_count)
    client = DeviceClient(part, link.address, timeout_s=link.timeout_s, token=link.token, tls=link.tls,
                          name=link.name)
    results = [client.request(feeds) for feeds in inputs]
    client.close()
    rows: list[dict[str, Any]] = [
        {"request": r.request_id, "ok": r.ok, "error": r.error, "device_s": r.device_s, "encode_s": r.encode_s,
         "transfer_s": r.transfer_s, "server_s": r.server_s, "decode_s": r.decode_s, "e2e_s": r.e2e_s,
         "bytes_up": r.bytes_up, "bytes_down": r.bytes_down} for r in results]
    if as_json:
        click.echo(json.dumps({"requests": rows, "ok": sum(r.ok for r in results),
                               "errors": sum(not r.ok for r in results)}, indent=1))
    else:
        console = stdout()
        for row in rows:
            state = "ok" if row["ok"] else f"[red]{row['error']}[/red]"
            decode = f", decode {row['decode_s'] * 1e3:.1f} ms" if row["decode_s"] else ""
            console.print(f"request {row['request']}: device {row['device_s'] * 1e3:.1f} ms, transfer "
                          f"{row['transfer_s'] * 1e3:.1f} ms, server {row['server_s'] * 1e3:.1f} ms{decode}, total "
                          f"{row['e2e_s'] * 1e3:.1f} ms, {human_bytes(row['bytes_up'])} up, "
                          f"{human_bytes(row['bytes_down'])} down: {state}")
    if not any(r.ok for r in results):
        raise SplitnnError(f"no request succeeded: {results[-1].error}")
    return next(r for r in reversed(results) if r.ok).outputs


def _adaptive(outdir: str, link: _Connection, input_file: str | None, random_count: int | None,
              deadline_s: float | None, as_json: bool) -> dict[str, Any]:
    """An adaptive plan's device: a cut per request from its own estimate, local answers under a deadline."""
    from splitnn.onnxsplit.artifacts.plan_file import read_adaptive_plan
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.adaptive_device import AdaptiveDevice

    plan = read_adaptive_plan(outdir)
    inputs = _inputs(plan, input_file, random_count)
    device = AdaptiveDevice(Path(outdir), plan, link.address, deadline_s=deadline_s,
                            timeout_s=link.timeout_s, token=link.token, tls=link.tls, name=link.name)
    points = []
    for feeds in inputs:
        points.append(device.request(feeds))
        if device.refused is not None and deadline_s is None:  # every later request would be refused too
            device.close()
            raise SplitnnError(device.refused)
    device.close()
    counts = device.counts()
    if device.refused is not None:  # --deadline asked the device to answer alone when the server does not
        stderr().print(f"[yellow]warning: {device.refused}; the requests after it were answered on the device "
                       "(--deadline)[/yellow]")
    if as_json:
        click.echo(json.dumps({"requests": [p.to_dict() for p in points], "answered_remote": counts.remote,
                               "answered_local": counts.local, "errors": counts.errors,
                               "deadline_missed": counts.deadline_missed, "switches": device.switches,
                               "probes": device.probes, "refused": device.refused}, indent=1))
    else:
        console = stdout()
        for i, p in enumerate(points, start=1):
            estimate = f"{p.estimate_bps / 1e6:.3g} Mbit/s" if p.estimate_bps else "none yet"
            console.print(f"request {i}: cut {p.cut_id}, answered {p.answered}, {p.e2e_s * 1e3:.1f} ms "
                          f"(estimate {estimate})")
        console.print(f"{counts.remote} through the server, {counts.local} on the device, {counts.errors} "
                      f"errors; {device.switches} switches, {device.probes} probes"
                      + (f"; {counts.deadline_missed} past the deadline" if deadline_s is not None else ""))
    if counts.errors == len(points):
        raise SplitnnError("no request was answered: is `splitnn serve` running on this plan? (--deadline lets the "
                           "device answer alone)")
    return device.last_outputs


def _inputs_of(outdir: str, input_file: str | None, random_count: int | None) -> list[dict[str, Any]]:
    from splitnn.onnxsplit.artifacts.plan_file import read_plan

    return _inputs(read_plan(outdir), input_file, random_count)


def _pipeline(outdir: str, link: _Connection, answers: _Answers, inputs: list[dict[str, Any]],
              as_json: bool) -> dict[str, Any]:
    """A pipeline plan's source: the first stage here, each frame sent to --server (the next stage), the answers
    taken at --answers from the last stage. Returns the last answer's outputs."""
    from splitnn.onnxsplit.runtime.pipeline_source import PipelineSource
    from splitnn.onnxsplit.runtime.stage import StageGuard

    guard = StageGuard(link.token, answers.tls, link.tls)
    with PipelineSource(outdir, answers.address, guard, link.timeout_s) as source:
        source.connect(link.address)
        results = [source.request(feeds) for feeds in inputs]
    seconds = [s for _, s in results]
    if as_json:
        click.echo(json.dumps({"requests": [{"request": i, "e2e_s": s} for i, s in enumerate(seconds, start=1)],
                               "ok": len(seconds), "errors": 0}, indent=1))
    else:
        console = stdout()
        for i, s in enumerate(seconds, start=1):
            console.print(f"request {i}: answered through every stage in {s * 1e3:.1f} ms")
    return results[-1][0]

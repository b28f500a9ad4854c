"""`splitnn device`: run the device part of a plan folder and send its tensors to a server."""
from __future__ import annotations

import json
from pathlib import Path

import click

from splitnn.cli.render import human_bytes, stdout


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--server", "address", required=True, metavar="HOST:PORT", help="Where `splitnn serve` listens.")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="A .npy file for the (single) model input.")
@click.option("--random", "random_count", type=click.IntRange(1), help="Send N random inputs instead.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds to wait for each answer.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the last answer's outputs (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Per-request timings as JSON.")
def device(outdir: str, address: str, input_file: str | None, random_count: int | None, timeout: float,
           output: str | None, as_json: bool) -> None:
    """Run the device part of OUTDIR and send its tensors to a server.

    \b
    Examples:
      splitnn device out/vgg16 --server 127.0.0.1:9000 --random 5
      splitnn device out/vgg16 --server 10.0.0.2:9000 --input image.npy -o result.npz
    """
    import numpy as np

    from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
    from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, parse_address

    if (input_file is None) == (random_count is None):
        raise SplitnnError("give exactly one of --input FILE.npy or --random N")
    part = DevicePart(outdir)
    specs = {n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}
    if input_file is not None:
        if len(specs) != 1:
            raise SplitnnError(f"--input gives one tensor but the model has {len(specs)} inputs: use --random")
        try:
            array = np.load(input_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SplitnnError(f"cannot read '{input_file}' as .npy: {exc}") from None
        name, (shape, dtype) = next(iter(specs.items()))
        if list(array.shape) != list(shape):
            raise SplitnnError(f"'{input_file}' has shape {list(array.shape)}, the model's input '{name}' needs {list(shape)}")
        inputs = [{name: array.astype(dtype)}]
    else:
        inputs = [plan_feeds(part.plan, seed) for seed in range(random_count or 0)]
    client = DeviceClient(part, parse_address(address), timeout_s=timeout)
    results = [client.request(feeds) for feeds in inputs]
    client.close()
    last_ok = next((r for r in reversed(results) if r.ok), None)
    if output is not None and last_ok is not None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **last_ok.outputs)
        write_bytes_atomic(Path(output), buffer.getvalue())
    rows = [{"request": r.request_id, "ok": r.ok, "error": r.error, "device_s": r.device_s, "encode_s": r.encode_s,
             "transfer_s": r.transfer_s, "server_s": r.server_s, "e2e_s": r.e2e_s, "bytes_up": r.bytes_up,
             "bytes_down": r.bytes_down} for r in results]
    if as_json:
        click.echo(json.dumps({"requests": rows, "ok": sum(r.ok for r in results),
                               "errors": sum(not r.ok for r in results)}, indent=1))
    else:
        console = stdout()
        for row in rows:
            state = "ok" if row["ok"] else f"[red]{row['error']}[/red]"
            console.print(f"request {row['request']}: device {row['device_s'] * 1e3:.1f} ms, transfer "
                          f"{row['transfer_s'] * 1e3:.1f} ms, server {row['server_s'] * 1e3:.1f} ms, total "
                          f"{row['e2e_s'] * 1e3:.1f} ms, {human_bytes(row['bytes_up'])} up: {state}")
    if not any(r.ok for r in results):
        raise SplitnnError(f"no request succeeded: {results[-1].error}")

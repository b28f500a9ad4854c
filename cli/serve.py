"""`splitnn serve`: the server part of a plan folder, answering devices over TCP."""
from __future__ import annotations

import click

from splitnn.cli.render import stderr


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other machines).")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
def serve(outdir: str, host: str, port: int) -> None:
    """Serve the server part of the plan in OUTDIR until interrupted.

    \b
    Examples:
      splitnn serve out/vgg16 --host 0.0.0.0 --port 9000
      splitnn device out/vgg16 --server 192.168.1.20:9000 --random 10
      splitnn serve out/adaptive --host 0.0.0.0     (an adaptive plan: every kept cut's server graph)
    """
    from splitnn.onnxsplit.core.errors import SplitnnError
    from splitnn.onnxsplit.runtime.server import ModelServer, plan_codecs, server_models

    models = server_models(outdir)
    if not models:
        raise SplitnnError(f"'{outdir}' puts the whole model on the device: its server part is empty and there is "
                           "nothing to serve (run `splitnn device` alone, or partition with another cut)")
    server = ModelServer(models, host=host, port=port, codecs=plan_codecs(outdir))
    what = f" ({len(models)} cuts of an adaptive plan)" if len(models) > 1 else ""
    stderr().print(f"serving {outdir}{what} on {server.address[0]}:{server.address[1]} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        counts = server.counts
        stderr().print(f"served {counts.ok} requests, {counts.errors} errors, {counts.connections} connections")

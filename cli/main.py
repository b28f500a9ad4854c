"""Entry point: the command group, and the one place errors become exit codes.

User errors (SplitnnError, bad options) print one line on stderr and exit 2;
heavy libraries are imported inside the commands, so `--help` stays instant.
"""
from __future__ import annotations

import sys

import click

from cli.analyze import analyze
from cli.partition import partition
from cli.profile import profile
from cli.runtime import device, run_bench, serve
from cli.samples import samples
from cli.update_weights import update_weights
from onnxsplit.errors import SplitnnError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="splitnn", prog_name="splitnn")
def cli() -> None:
    """Partition ONNX models between a device and a server, or across small boards.

    \b
    Quick start:
      splitnn samples build resnet18 -o resnet18.onnx
      splitnn analyze resnet18.onnx
      splitnn partition resnet18.onnx -o out/resnet18 --link 4g
      splitnn run-bench out/resnet18
    """


cli.add_command(analyze)
cli.add_command(partition)
cli.add_command(profile)
cli.add_command(run_bench)
cli.add_command(serve)
cli.add_command(device)
cli.add_command(samples)
cli.add_command(update_weights)


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="splitnn", standalone_mode=False)
    except SplitnnError as exc:
        _fail(str(exc))
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "splitnn"
        _fail(f"{exc.format_message()} (see '{command} --help')")
    except click.ClickException as exc:
        _fail(exc.format_message())
    except (click.Abort, KeyboardInterrupt):
        click.echo("splitnn: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    click.echo(f"splitnn: error: {message}", err=True)
    sys.exit(2)

"""Entry point: the command group, and the one place errors become exit codes.

User errors (SplitnnError, bad options) print one line on stderr and exit 2;
heavy libraries are imported inside the commands, and a command's module only
when that command runs (click's documented lazy-loading pattern), so `--help`
stays instant and `partition` does not pay for importing `run-bench`.
"""
from __future__ import annotations

import errno
import importlib
import sys

import click

from splitnn.onnxsplit.core.errors import SplitnnError

# command name -> ("module:attribute", the first line of its help). The lines are kept here so that `splitnn --help`
# lists the commands without importing them (each module pulls in onnx); tests/cli/test_main_cli.py checks that
# every line is still its command's own.
COMMANDS = {
    "analyze": ("splitnn.cli.analyze:analyze", "Cost of every node and every place MODEL can be cut."),
    "device": ("splitnn.cli.device:device", "Run the device part of OUTDIR and send its tensors to a server."),
    "partition": ("splitnn.cli.partition:partition",
                  "Split MODEL between a device and a server at the best cut, and write both parts."),
    "profile": ("splitnn.cli.profile:profile",
                "Time every node of MODEL(s) on this machine and fit a device profile to the times."),
    "run-bench": ("splitnn.cli.run_bench:run_bench",
                  "Run the plan in OUTDIR end to end over an emulated link and compare with the prediction."),
    "samples": ("splitnn.cli.samples:samples",
                "List and build the bundled reference networks (LeNet-5, AlexNet, VGG, ResNet-18, MobileNet)."),
    "serve": ("splitnn.cli.serve:serve", "Serve the server part of the plan in OUTDIR until stopped (Ctrl-C or SIGTERM)."),
    "update-weights": ("splitnn.cli.update_weights:update_weights",
                       "Replace the weights of a split in OUTDIR with those of RETRAINED.onnx."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; its own help lists them from COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    except OSError as exc:
        if exc.errno not in _FULL_OR_READ_ONLY:
            raise  # anything else is a bug to report, with its traceback
        where = f" writing '{exc.filename}'" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}: free some space or write the output to another disk (-o)")
    sys.exit(code if isinstance(code, int) else 0)


# A disk that fills up (or is read-only, or a file past the user's size limit) mid-write is the machine's state, not a bug: one line, exit 2; the writers
# (onnxsplit.core.atomic_files) leave nothing half-written behind.
_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _fail(message: str) -> None:
    click.echo(f"splitnn: error: {message}", err=True)
    sys.exit(2)

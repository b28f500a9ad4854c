"""The command group: its help lists every command without importing any of them."""
from __future__ import annotations

import subprocess
import sys

from splitnn.cli.main import COMMANDS, cli


def test_every_listed_summary_is_its_commands_own() -> None:
    for name, (_, summary) in COMMANDS.items():
        command = cli.get_command(None, name)  # type: ignore[arg-type]  # click reads no context here
        assert command is not None, name
        assert summary == command.get_short_help_str(10**6), name


def test_help_imports_no_command_and_no_onnx() -> None:
    script = ("import sys\nfrom splitnn.cli.main import main\n"
              "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "heavy = sorted(m for m in sys.modules if m in ('onnx', 'onnxruntime', 'numpy') "
              "or m.startswith('splitnn.cli.') and m.rsplit('.', 1)[1] in "
              "('analyze', 'partition', 'run_bench', 'serve', 'device', 'profile', 'samples', 'update_weights'))\n"
              "print('HEAVY', heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "HEAVY []" in done.stderr, done.stderr
    for name in COMMANDS:
        assert name in done.stdout


def _examples(command) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The arguments of each `splitnn ...` line under its help's `Examples:`, with the trailing notes (`# ...`,
    `(...)` after two spaces) and a redirection taken off, and optional `[...]` parts kept."""
    import re
    import shlex

    text = command.help or ""
    lines = text.split("Examples:", 1)[1].splitlines() if "Examples:" in text else []
    examples = []
    for line in (line.strip() for line in lines):
        if line.startswith("splitnn "):
            line = re.sub(r"\s{2,}[#(].*$", "", line).split(" > ")[0].replace("[", "").replace("]", "")
            examples.append(shlex.split(line)[1:])
    return examples


def test_every_example_in_a_commands_help_parses() -> None:
    """issue 30, item 9: `analyze --help` showed `splitnn analyze model.onnx 1x3x224x224 --csv nodes.csv`, which
    fails (a bare shape is an --input-shape value, not an argument). Each example must at least parse."""
    import click

    checked = 0
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        subcommands = list(command.commands.values()) if isinstance(command, click.Group) else [command]
        for each in subcommands:
            for args in _examples(each):  # (one may show another command: `profile` the `partition` that follows)
                target = cli.get_command(None, args[0])  # type: ignore[arg-type]
                assert target is not None, args
                rest = args[1:]
                if isinstance(target, click.Group):
                    sub = target.get_command(None, rest[0])  # type: ignore[arg-type]
                    sub.make_context(rest[0], rest[1:])  # type: ignore[union-attr]
                else:
                    target.make_context(args[0], rest)
                checked += 1
    assert checked >= 30

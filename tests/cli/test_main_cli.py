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

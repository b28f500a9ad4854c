"""Output piped to a file keeps every table cell whole (issue 18, item 9)."""
from __future__ import annotations

import os
import subprocess
import sys


def test_piped_tables_are_not_cut(sample_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "splitnn.cli", "analyze", str(sample_path("lenet5"))],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert "averagepool1" in proc.stdout and "1x6x28x28" in proc.stdout  # cut to "average…" and "1x6x28x…" before


def test_piped_stderr_keeps_each_line_whole(sample_path, tmp_path):
    """A note on stderr piped to a log (no COLUMNS) was wrapped at 80 columns, rich's width for a pipe (issue 30,
    item 9)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "splitnn.cli", "partition", str(sample_path("lenet5")), "-o", "plan",
                           "--link", "cat1", "--bandwidth", "10kbit", "--codec", "int8"],  # all on the device
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    note = [line for line in proc.stderr.splitlines() if line.startswith("note: the chosen cut sends nothing")]
    assert len(note) == 1 and note[0].endswith("(choose a cut that sends, with --cut or another --link)"), proc.stderr
    assert len(note[0]) > 80

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

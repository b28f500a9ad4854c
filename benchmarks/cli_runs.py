"""What the benchmark scripts share: running `splitnn` as a user would (a child process, --json) and building
a sample into the work folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def splitnn_json(*args: str, cwd: Path) -> dict:
    """`splitnn ARGS --json` from `cwd`, its JSON; the script stops with stderr's tail if the command fails."""
    proc = subprocess.run([sys.executable, "-m", "splitnn.cli", *args, "--json"], capture_output=True, text=True,
                          cwd=cwd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"splitnn {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout)


def sample_model(name: str, work: Path, input_size: int | None = None) -> Path:
    """Sample `name` (at its own input size, or `input_size`) built into `work` (once)."""
    path = work / (f"{name}-{input_size}.onnx" if input_size else f"{name}.onnx")
    size = ["--input-size", str(input_size)] if input_size else []
    if not path.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", name, *size, "-o", str(path)], cwd=work,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path

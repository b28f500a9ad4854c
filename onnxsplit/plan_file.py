"""plan.json, the one file every later step reads (serve, device, run-bench, update-weights)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxsplit.errors import SplitnnError

PLAN_FILE = "plan.json"


def read_plan(outdir: str | Path) -> dict[str, Any]:
    """The plan written by `splitnn partition` into `outdir`."""
    path = Path(outdir) / PLAN_FILE
    if not path.is_file():
        raise SplitnnError(f"'{outdir}' has no {PLAN_FILE}: give the folder written by `splitnn partition MODEL -o FOLDER`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SplitnnError(f"'{path}' is not a valid plan ({exc}): partition again") from None

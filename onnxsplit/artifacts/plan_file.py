"""plan.json, the one file every later step reads (serve, device, run-bench, update-weights)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from splitnn.onnxsplit.artifacts.layout import PLAN_FILE
from splitnn.onnxsplit.core.errors import SplitnnError

# Why a plan of the other kind cannot be used where one of `strategy` is wanted.
_WRONG_KIND = {
    "vertical": "holds a tile plan, which has no device and server parts: run it with `splitnn run-bench OUTDIR`",
    "tiles": "holds a vertical split, not a tile plan: partition with --strategy tiles",
}


def plan_strategy(plan: dict[str, Any]) -> str:
    """"vertical" (device + server) or "tiles"; plans written before tiles existed are vertical."""
    return str(plan.get("strategy", "vertical"))


def read_plan(outdir: str | Path, strategy: str | None = None) -> dict[str, Any]:
    """The plan written by `splitnn partition` into `outdir`; with `strategy`, it must be of that kind."""
    path = Path(outdir) / PLAN_FILE
    if not path.is_file():
        raise SplitnnError(f"'{outdir}' has no {PLAN_FILE}: give the folder written by `splitnn partition MODEL -o FOLDER`")
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SplitnnError(f"'{path}' is not a valid plan ({exc}): partition again") from None
    if strategy is not None and plan_strategy(plan) != strategy:
        raise SplitnnError(f"'{outdir}' {_WRONG_KIND[strategy]}")
    return plan  # type: ignore[no-any-return]

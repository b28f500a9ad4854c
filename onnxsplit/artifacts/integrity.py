"""A SHA-256 of every file of a plan folder, recorded in plan.json when the plan is written and checked before a
side runs its part (issue 15, item 3).

Without it a truncated weights.bin was found only when onnxruntime failed to deserialize a tensor, and a blob of
the right size with other bytes was not found at all. Each side checks its own files (the device's under
device/, the server's under server/), streamed in 1 MB blocks so a weight blob of gigabytes is never read whole;
a folder copied to a board without server/ is fine. Plans written before these digests are not checked.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from splitnn.onnxsplit.artifacts.layout import PLAN_FILE
from splitnn.onnxsplit.core.errors import SplitnnError

BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> dict[str, str]:
    """Every file under `folder` but plan.json itself, by its path relative to the folder (forward slashes)."""
    return {path.relative_to(folder).as_posix(): file_sha256(path)
            for path in sorted(folder.rglob("*")) if path.is_file() and path.relative_to(folder).as_posix() != PLAN_FILE}


def check_sha256(outdir: Path, recorded: Mapping[str, str], side: str | None) -> None:
    """Refuse, naming the file, when a file of `side` ("device" or "server"; None: any) is missing or not the one
    written."""
    for relative, expected in sorted(recorded.items()):
        if side is not None and not relative.startswith(f"{side}/"):
            continue
        path = outdir / relative
        if not path.is_file():
            raise SplitnnError(f"'{path}' is missing from the plan folder: copy the plan folder whole, or partition again")
        if file_sha256(path) != expected:
            raise SplitnnError(f"'{path}' is not the file partition wrote (its SHA-256 is not the one plan.json records: "
                               "changed or truncated since): copy it again from the plan folder, or partition again")

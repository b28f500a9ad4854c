"""A plan folder is written under a staging name and published in one rename, or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from splitnn.onnxsplit.artifacts.layout import PLAN_FILE
from splitnn.onnxsplit.core.atomic_files import writable_folder
from splitnn.onnxsplit.core.errors import SplitnnError


def check_output_folder(outdir: Path) -> None:
    """Refuse an OUTDIR that holds something other than an earlier splitnn plan (it would be replaced whole)."""
    if outdir.exists() and (not outdir.is_dir() or (any(outdir.iterdir()) and not (outdir / PLAN_FILE).exists())):
        raise SplitnnError(f"'{outdir}' exists and is not a splitnn output folder: choose a new -o folder or empty it")


def publish(staging: Path, outdir: Path) -> None:
    """Swap the staged folder into place; an older plan in OUTDIR is replaced whole."""
    # mkdtemp makes a private folder; the published plan gets ordinary permissions.
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = None
    if outdir.exists():
        old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        os.replace(outdir, old)
    os.replace(staging, outdir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_folder(outdir: Path) -> Iterator[Path]:
    """A private folder beside `outdir` to write a plan into (checked first: `outdir` may only hold an older plan);
    removed on the way out, whatever happened. `publish` it to make it the plan."""
    check_output_folder(outdir)
    writable_folder(outdir.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Write files so that a failure never leaves a half-written result behind."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import onnx

from splitnn.onnxsplit.core.errors import SplitnnError


def writable_folder(folder: Path) -> Path:
    """`folder`, created if needed; a place that cannot hold files is one SplitnnError line, not a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # the one sure test (root passes access(), /proc still refuses)
            pass
    except OSError as exc:
        raise SplitnnError(f"cannot write into '{folder}' ({exc.strerror or exc}): choose a folder you can write to") from None
    return folder


def save_model_atomic(model: onnx.ModelProto, path: str | Path, external_data: bool = False) -> list[Path]:
    """Save `model` to `path` (and, with `external_data`, its weights to `<name>.data` beside it).

    Everything is written under a temporary folder next to the target, then
    renamed into place: weights first, graph last, so a reader never sees a
    graph whose weights are missing. Returns the paths written.
    """
    path = Path(path)
    writable_folder(path.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        written: list[Path] = []
        if external_data:
            data_name = f"{path.stem}.data"
            onnx.save_model(
                model,
                str(staging / path.name),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            os.replace(staging / data_name, path.parent / data_name)
            written.append(path.parent / data_name)
        else:
            onnx.save_model(model, str(staging / path.name))
        os.replace(staging / path.name, path)
        written.append(path)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write to a temporary name beside `path`, then rename: readers see the old file or the new one. The file
    gets `mode` (e.g. 0o600 for a private key, set before the rename), else the mode a new file would get."""
    path = Path(path)
    writable_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, _new_file_mode(path) if mode is None else mode)  # mkstemp's 0600 hid profiles and pictures
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode(path: Path) -> int:
    """The mode the file at `path` gets: the one it has, when it exists; else what open() would give a new file
    (0666 less the umask). The umask can only be read by setting it, so it is set back at once."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask

"""Files written whole or not at all, with the permissions a new file gets."""
from __future__ import annotations

import os
import stat

from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic, write_text_atomic


def test_a_written_file_gets_the_umask_mode_and_keeps_an_existing_files_mode(tmp_path):
    """mkstemp makes its file 0600: a profile or a picture written so could not be read by anyone else."""
    mask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "chart.png", b"\x89PNG")
        assert stat.S_IMODE((tmp_path / "chart.png").stat().st_mode) == 0o644
        os.chmod(tmp_path / "chart.png", 0o640)  # the user's own choice survives a rewrite
        write_text_atomic(tmp_path / "chart.png", "again")
        assert stat.S_IMODE((tmp_path / "chart.png").stat().st_mode) == 0o640
        assert (tmp_path / "chart.png").read_text() == "again"
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.toml", "x = 1\n")
        assert stat.S_IMODE((tmp_path / "private.toml").stat().st_mode) == 0o600
        os.umask(0o022)
        write_bytes_atomic(tmp_path / "key.pem", b"secret", mode=0o600)  # a private key: never readable by others
        assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    finally:
        os.umask(mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "key.pem", "private.toml"]  # no temporary

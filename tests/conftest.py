from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The measured `host` profile is cached; the tests (and the commands they run as child processes, which inherit
# the environment) use a cache of their own, never the user's ~/.cache/splitnn nor what an earlier run left.
os.environ["SPLITNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="splitnn-test-cache-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The cache folder is the session's own: removed when it ends, so runs do not pile them up in /tmp."""
    shutil.rmtree(os.environ["SPLITNN_CACHE_DIR"], ignore_errors=True)

from splitnn.onnxsplit.core.atomic_files import save_model_atomic
from splitnn.sample_models import build_sample


@pytest.fixture(scope="session")
def sample_path(tmp_path_factory: pytest.TempPathFactory):
    """Build a sample once per session at a given size: sample_path('resnet18', 64)."""
    cache: dict[tuple[str, int | None, bool], Path] = {}
    folder = tmp_path_factory.mktemp("samples")

    def build(name: str, size: int | None = None, external: bool = False) -> Path:
        key = (name, size, external)
        if key not in cache:
            sub = folder / f"{name}-{size}-{'ext' if external else 'inline'}"
            cache[key] = sub / f"{name}.onnx"
            save_model_atomic(build_sample(name, size), cache[key], external_data=external)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def lenet_plan(sample_path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 split written as `splitnn partition` writes it (cut after the second pooling layer)."""
    import splitnn

    outdir = tmp_path_factory.mktemp("plan") / "lenet"
    splitnn.partition(sample_path("lenet5"), outdir, cut="averagepool2_out")
    return outdir

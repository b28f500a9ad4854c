from __future__ import annotations

from pathlib import Path

import pytest

from onnxsplit.files import save_model_atomic
from sample_models import build_sample


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

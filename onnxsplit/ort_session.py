"""The one way splitnn opens an onnxruntime session: CPU, quiet, options by keyword."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import onnx

if TYPE_CHECKING:
    import onnxruntime


def create_session(
    source: onnx.ModelProto | str | Path,
    *,
    level: str | None = None,
    prepack: bool = True,
    config: dict[str, str] | None = None,
    save_to: Path | None = None,
) -> "onnxruntime.InferenceSession":
    """A CPU session for a model proto or a file (.onnx or .ort).

    level: graph optimizations, "none" or "basic" (default: onnxruntime's own, all);
    prepack=False skips repacking weights, which only pays off over many runs;
    save_to writes the optimized model there (with `config`, e.g. in ORT format).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if level is not None:
        levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
        options.graph_optimization_level = levels[level]
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    model = source.SerializeToString() if isinstance(source, onnx.ModelProto) else str(source)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

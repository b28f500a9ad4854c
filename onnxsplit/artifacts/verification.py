"""Check written parts against the original model: the reference outputs and the comparison.

The original runs with its weights mapped in place from the source file, never
from the parts being checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.weight_source import open_in_place


@dataclass(frozen=True)
class Verification:
    """How the written parts compared with the original model on the verification input."""

    max_abs_err: float
    atol: float
    rtol: float
    passed: bool
    device_artifact: str | None = None  # a split's device file that was chained: the .ort when written, else the .onnx


# Verification sessions run once each, two at a time: repacking weights for
# faster repeated runs would only cost time, and idle threads must not spin
# on the cores the other session is using.
VERIFY_CONFIG = {"session.intra_op.allow_spinning": "0"}


def verification_session(path: Path):  # type: ignore[no-untyped-def]
    return create_session(path, prepack=False, config=VERIFY_CONFIG)


def reference_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original model's outputs, its weights read in place from the source file (not from the parts)."""
    original = open_in_place(graph.model, graph.initializers, graph.path, prepack=False,  # type: ignore[arg-type]
                             config=VERIFY_CONFIG)
    return dict(zip(graph.outputs, original.run(list(graph.outputs), feeds)))


def compare_outputs(results: dict[str, np.ndarray], reference: dict[str, np.ndarray], atol: float,
                    rtol: float) -> tuple[float, bool]:
    """The largest absolute difference from `reference`, and whether every output is within tolerance.

    An output missing from `results` fails the match; one of another shape is an error.
    """
    max_err = 0.0
    passed = True
    for name, expected in reference.items():
        got = results.get(name)
        if got is None:
            passed = False
            continue
        if got.shape != expected.shape:
            raise SplitnnError(f"verification: output '{name}' has shape {got.shape}, expected {expected.shape}")
        if expected.size:
            max_err = max(max_err, float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))))
            passed = passed and bool(np.allclose(got, expected, atol=atol, rtol=rtol))
    return max_err, passed

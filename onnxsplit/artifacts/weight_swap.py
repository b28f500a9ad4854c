"""Swapping a written part's weight values for a retrained model's (update-weights, for any plan kind that keeps
parts with their blobs: a vertical split's two, a pipeline's stages).

The retrained model has the same graph (plan.json's fingerprint says so);
only values differ. A part is read with its blob, its changed initializers
are replaced, and the new graph and blob are written to a staging folder
beside the part, then renamed into place: the blob first and the graph last,
so that the old graph (whose tensors' shapes are unchanged) reads the new
blob correctly in between.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from splitnn.onnxsplit.artifacts.fingerprint import file_fingerprint
from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, ORT_FILE, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.plan_file import load_verification_data, save_verification_data
from splitnn.onnxsplit.core.errors import SplitnnError


def weights_by_name(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every weight value of a model: initializers and Constant-node values, by tensor name."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def retrained_weights(retrained: str | Path, graph_fingerprint: str) -> dict[str, np.ndarray]:
    """The weight values of `retrained`, by name, once its graph is checked to be the partitioned model's (the
    plan's `graph_fingerprint`): one line where it is not."""
    if file_fingerprint(retrained) != graph_fingerprint:
        raise SplitnnError(f"'{retrained}' does not have the same graph as the partitioned model (nodes, wiring or "
                           "weight shapes differ): update-weights only swaps weight values; partition the new model "
                           "instead")
    return weights_by_name(onnx.load(str(retrained), load_external_data=True))


def load_part(model_path: Path, what: str) -> onnx.ModelProto:
    """A written part with its weights, or one line saying it is damaged (`what` names it)."""
    try:
        return onnx.load(str(model_path), load_external_data=True)
    except (OSError, ValueError, DecodeError) as exc:
        raise SplitnnError(f"the plan's {what} '{model_path}' or its weights are damaged ({exc}): copy the folder "
                           "again or partition again") from None


def swap_weights(part: onnx.ModelProto, new_values: dict[str, np.ndarray]) -> tuple[list[str], int]:
    """Replace, in `part`, every initializer whose value differs in `new_values`; the names and their bytes."""
    changed: list[str] = []
    changed_bytes = 0
    for tensor in part.graph.initializer:
        old = numpy_helper.to_array(tensor)
        new = new_values[tensor.name]
        if old.tobytes() != new.tobytes():
            changed.append(tensor.name)
            changed_bytes += new.nbytes
            tensor.CopyFrom(numpy_helper.from_array(new.astype(old.dtype, copy=False), tensor.name))
    return changed, changed_bytes


def move_into_place(staging: Path, folder: Path) -> None:
    """The staged blob, .ort and graph (those staged) renamed over the part's in `folder`, in that order."""
    for name in (WEIGHTS_FILE, ORT_FILE, MODEL_FILE):
        if (staging / name).exists():
            (staging / name).chmod(0o644)
            os.replace(staging / name, folder / name)


def update_reference(outdir: Path, retrained: str | Path) -> None:
    """The kept reference outputs become the retrained model's, on the same kept input (run-bench compares
    against them)."""
    kept = load_verification_data(outdir)
    if kept is None:
        return
    from splitnn.onnxsplit.core.ort_session import create_session

    inputs, reference = kept
    session = create_session(Path(retrained), prepack=False)
    names = list(reference)
    save_verification_data(outdir, inputs, dict(zip(names, session.run(names, inputs))))

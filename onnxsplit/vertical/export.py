"""Write a split plan's artifacts, verify them, and publish the folder in one rename.

OUTDIR/plan.json
OUTDIR/device/model.onnx   graph only        OUTDIR/device/weights.bin  all its weights
OUTDIR/device/model.ort    onnxruntime's mobile (ORT) format of the device part
OUTDIR/server/model.onnx   graph only        OUTDIR/server/weights.bin  all its weights

Everything is written under a staging folder beside OUTDIR and renamed into
place only after verification passed, so a failed run leaves no half-written
plan behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.artifacts.parts import Part, extract_parts
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.artifacts.plan_file import PLAN_FILE
from splitnn.onnxsplit.vertical.planning import Plan
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import WeightSource, open_in_place
from splitnn.onnxsplit.vertical.weights_update import graph_fingerprint

WEIGHTS_FILE = "weights.bin"
# Constant-node values at least this large are moved into the weight blob (smaller
# ones are shape and index scalars, which belong with the graph).
CONSTANT_TO_INITIALIZER_BYTES = 64


@dataclass(frozen=True)
class Verification:
    max_abs_err: float
    device_artifact: str | None  # the device file that was chained: the .ort when written, else the .onnx
    atol: float
    rtol: float
    passed: bool


# onnxruntime's ORT format is a flatbuffer, whose offsets are 32-bit.
ORT_FORMAT_MAX_BYTES = 2**31


def constants_to_initializers(model: onnx.ModelProto, min_bytes: int = CONSTANT_TO_INITIALIZER_BYTES) -> int:
    """Turn large Constant nodes into initializers of the same name, so their bytes go to the blob.

    Exported models often keep their weights in Constant nodes; ONNX defines a
    Constant node and an initializer of the same name as equivalent. Returns
    how many nodes were moved.
    """
    keep = []
    moved = 0
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None and len(node.attribute) == 1:
            array = numpy_helper.to_array(value)
            if array.nbytes >= min_bytes:
                model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
                moved += 1
                continue
        keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved


_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def save_part(part: Part, folder: Path, weights: WeightSource) -> None:
    """Write the part's graph and stream every weight into its one blob, in graph order."""
    assert part.model is not None
    model = part.model
    folder.mkdir(parents=True)
    constants_to_initializers(model)
    with open(folder / WEIGHTS_FILE, "wb") as blob:
        for tensor in model.graph.initializer:
            if tensor.data_type == onnx.TensorProto.STRING:
                continue  # strings cannot be external data; they stay in the graph
            offset = blob.tell()
            if tensor.name in weights.initializers:
                length = weights.copy_into(tensor.name, blob)
            else:  # a Constant node's value, moved above
                length = blob.write(numpy_helper.to_array(tensor).tobytes())
            for field_name in _DATA_FIELDS:
                tensor.ClearField(field_name)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
    onnx.save_model(model, str(folder / "model.onnx"))


def convert_to_ort(onnx_path: Path, ort_path: Path) -> None:
    """onnxruntime's own ORT-format conversion (what its convert_onnx_models_to_ort tool does).

    Basic optimizations only, so the file stays runnable by any execution provider.
    """
    create_session(onnx_path, save_to=ort_path, config={"session.save_model_format": "ORT"}, level="basic", prepack=False)


# Verification sessions run once each, two at a time: repacking weights for
# faster repeated runs would only cost time, and idle threads must not spin
# on the cores the other session is using.
_VERIFY_CONFIG = {"session.intra_op.allow_spinning": "0"}


def _session(path: Path):  # type: ignore[no-untyped-def]
    return create_session(path, prepack=False, config=_VERIFY_CONFIG)


def reference_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original model's outputs, its weights read in place from the source file (not from the parts)."""
    original = open_in_place(graph.model, graph.initializers, graph.path, prepack=False,  # type: ignore[arg-type]
                             config=_VERIFY_CONFIG)
    return dict(zip(graph.outputs, original.run(list(graph.outputs), feeds)))


def run_device_side(folder: Path, device: Part, feeds: dict[str, np.ndarray], ort_format: bool) -> tuple[dict[str, np.ndarray], str | None]:
    """Convert the written device part to ORT format (when asked) and run the file a device would run.

    The ORT-format file was converted from the .onnx part, so running it checks
    both. Returns the device part's outputs and the file run (relative to `folder`).
    """
    if device.model is None:
        return {}, None
    device_file = folder / "device" / "model.onnx"
    if ort_format:
        convert_to_ort(device_file, folder / "device" / "model.ort")
        device_file = folder / "device" / "model.ort"
    values = _session(device_file).run(list(device.outputs), {n: feeds[n] for n in device.inputs})
    return dict(zip(device.outputs, values)), device_file.relative_to(folder).as_posix()


def verify(
    folder: Path,
    server: Part,
    feeds: dict[str, np.ndarray],
    device_results: dict[str, np.ndarray],
    device_artifact: str | None,
    reference: dict[str, np.ndarray],
    atol: float,
    rtol: float,
) -> Verification:
    """Run the written server part on the device part's outputs and compare with the original's `reference`."""
    results = dict(device_results)
    if server.model is not None:
        pool = {**feeds, **results}
        values = _session(folder / "server" / "model.onnx").run(list(server.outputs), {n: pool[n] for n in server.inputs})
        results.update(zip(server.outputs, values))
    max_err, passed = compare_outputs(results, reference, atol, rtol)
    return Verification(max_err, device_artifact, atol, rtol, passed)


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


def check_output_folder(outdir: Path) -> None:
    """Refuse an OUTDIR that holds something other than an earlier splitnn plan (it would be replaced whole)."""
    if outdir.exists() and (not outdir.is_dir() or (any(outdir.iterdir()) and not (outdir / PLAN_FILE).exists())):
        raise SplitnnError(f"'{outdir}' exists and is not a splitnn output folder: choose a new -o folder or empty it")


def write_split(
    analysis: Analysis,
    plan: Plan,
    outdir: str | Path,
    *,
    ort_format: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> dict[str, Any]:
    """Write, verify and publish the artifacts of `plan`; return the plan.json content."""
    outdir = Path(outdir)
    check_output_folder(outdir)
    graph = analysis.graph
    if graph.path is None:
        raise SplitnnError("the analysis has no model file to take the weights from")
    if ort_format and plan.chosen.cut.device_param_bytes >= ORT_FORMAT_MAX_BYTES:
        raise SplitnnError(
            f"the device part holds {plan.chosen.cut.device_param_bytes / 1e9:.2f} GB of weights and the ORT format "
            "(a flatbuffer) cannot exceed 2 GiB: add --no-ort, or choose an earlier cut"
        )
    # Parts are cut from the weightless skeleton; their weights are streamed from the source file.
    device, server = extract_parts(graph, graph.model, plan.chosen.cut)

    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    background = ThreadPoolExecutor(max_workers=2)
    try:
        artifacts: dict[str, str] = {}
        # While the main thread writes the parts, the original model runs on one
        # thread and the device part is converted and run on another as soon as
        # it is written: onnxruntime and file writes release the GIL.
        feeds = random_inputs(graph)
        original_run = background.submit(reference_outputs, graph, feeds)
        device_run = None
        with WeightSource.of(graph) as weights:
            for side, part in (("device", device), ("server", server)):
                if part.model is None:
                    continue
                save_part(part, staging / side, weights)
                artifacts[f"{side}_model"] = f"{side}/model.onnx"
                artifacts[f"{side}_weights"] = f"{side}/{WEIGHTS_FILE}"
                if side == "device":
                    device_run = background.submit(run_device_side, staging, device, feeds, ort_format)
        device_results, device_artifact = device_run.result() if device_run is not None else ({}, None)
        if ort_format and device.model is not None:
            artifacts["device_ort"] = "device/model.ort"
        check = verify(staging, server, feeds, device_results, device_artifact, original_run.result(), atol, rtol)
        if not check.passed:
            raise SplitnnError(
                f"verification failed: the chained parts differ from the model by up to {check.max_abs_err:.3g} "
                f"(atol {atol}, rtol {rtol}); nothing was written; loosen --atol/--rtol if this precision is expected"
            )
        document = {
            "splitnn_version": 1,
            "model": str(graph.path),
            "graph_fingerprint": graph_fingerprint(graph.model),  # the skeleton read at load time
            "inputs": {n: {"shape": list(graph.info(n).shape), "dtype": graph.info(n).dtype} for n in graph.inputs},
            "outputs": list(graph.outputs),
            **plan.to_dict(),
            "parts": {
                "device": {"inputs": list(device.inputs), "outputs": list(device.outputs), "empty": device.model is None},
                "server": {"inputs": list(server.inputs), "outputs": list(server.outputs), "empty": server.model is None},
            },
            "verification": {
                "max_abs_err": check.max_abs_err,
                "device_artifact": check.device_artifact,
                "atol": atol,
                "rtol": rtol,
                "passed": check.passed,
            },
            "artifacts": artifacts,
        }
        (staging / PLAN_FILE).write_text(json.dumps(document, indent=1), encoding="utf-8")
        publish(staging, outdir)
        return document
    finally:
        background.shutdown(wait=True)
        shutil.rmtree(staging, ignore_errors=True)


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

"""Write one part to its folder: the graph, its weights streamed into one blob, the ORT-format file.

A part folder holds MODEL_FILE (graph only) and WEIGHTS_FILE (every weight,
as onnx external data at its offset). Weights are copied from where the source
model keeps them, so the model is never held in memory whole.
"""
from __future__ import annotations

import mmap
from collections.abc import Collection
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.parts import Part
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL, create_session
from splitnn.onnxsplit.model.weight_source import WeightSource

# onnxruntime's ORT format is a flatbuffer, whose offsets are 32-bit.
ORT_FORMAT_MAX_BYTES = 2**31


# Constant-node values at least this large are moved into the weight blob (smaller
# ones are shape and index scalars, which belong with the graph).
CONSTANT_TO_INITIALIZER_BYTES = 64


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


# Integer tensors up to this size (axes, shapes, pads, split sizes, zero points), and any tensor up to
# INLINE_ANY_MAX_BYTES (Resize scales, Clip bounds, scalars), stay in the graph: onnxruntime's shape inference
# reads their values when it loads the part, and cannot read them from external data.
INLINE_INTEGER_MAX_BYTES = 4096
INLINE_ANY_MAX_BYTES = 64
_INTEGER_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
                            onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                            onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL})


def stays_inline(tensor: onnx.TensorProto) -> bool:
    """Whether `tensor` is kept in a part's graph rather than its weight blob: strings, integers up to
    INLINE_INTEGER_MAX_BYTES, anything up to INLINE_ANY_MAX_BYTES."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return True  # strings cannot be external data
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    nbytes = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
    return nbytes <= (INLINE_INTEGER_MAX_BYTES if tensor.data_type in _INTEGER_TYPES else INLINE_ANY_MAX_BYTES)


def save_part(part: Part, folder: Path, weights: WeightSource) -> None:
    """Write the part's graph and stream every weight into its one blob, in graph order."""
    save_parts({MODEL_FILE: part}, folder, weights)


def save_parts(parts: dict[str, Part], folder: Path, weights: WeightSource) -> None:
    """Write several parts' graphs into `folder` (each under its file name) and every weight they read into one
    blob, each tensor once whichever parts read it (an adaptive plan's server graphs share their weights)."""
    folder.mkdir(parents=True)
    placed: dict[str, tuple[int, int]] = {}  # tensor name -> (offset, length) in the blob
    with open(folder / WEIGHTS_FILE, "wb") as blob:
        for file_name, part in parts.items():
            assert part.model is not None
            model = part.model
            constants_to_initializers(model)
            for tensor in model.graph.initializer:
                if stays_inline(tensor):
                    _make_inline(tensor, weights)
                    continue
                if tensor.name not in placed:
                    offset = blob.tell()
                    if tensor.name in weights.initializers:
                        length = weights.copy_into(tensor.name, blob)
                    else:  # a Constant node's value, moved above
                        length = blob.write(numpy_helper.to_array(tensor).tobytes())
                    placed[tensor.name] = (offset, length)
                offset, length = placed[tensor.name]
                _clear_data(tensor, onnx.TensorProto.EXTERNAL)
                for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
            onnx.save_model(model, str(folder / file_name))


def _make_inline(tensor: onnx.TensorProto, weights: WeightSource) -> None:
    """Give `tensor` its value in the graph (the skeleton may have left its bytes in the source file)."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL and _has_values(tensor):
        return
    if tensor.name in weights.initializers:
        data = bytes(weights.read(tensor.name))
        _clear_data(tensor, onnx.TensorProto.DEFAULT)
        tensor.raw_data = data


def _clear_data(tensor: onnx.TensorProto, location: onnx.TensorProto.DataLocation) -> None:
    """Drop `tensor`'s value and where it was kept, ready to be given one at `location`."""
    for field_name in _DATA_FIELDS:
        tensor.ClearField(field_name)
    del tensor.external_data[:]
    tensor.data_location = location


def _has_values(tensor: onnx.TensorProto) -> bool:
    return bool(tensor.raw_data) or any(len(getattr(tensor, f)) for f in _DATA_FIELDS if f != "raw_data") or (
        int(np.prod(tensor.dims, dtype=np.int64)) == 0)


def write_part_graph(model: onnx.ModelProto, folder: Path) -> None:
    """Save a part held in memory with its weights (loaded) as MODEL_FILE + WEIGHTS_FILE in `folder`, the
    same way save_part lays them out (small integers and strings in the graph)."""
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=WEIGHTS_FILE, size_threshold=0)
    for tensor in model.graph.initializer:
        if stays_inline(tensor):
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(model, str(folder / MODEL_FILE))


def blob_initializers(part_model: Path, leave_out: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Every initializer of a written part (its graph and weight blob) but those named in `leave_out`, by name."""
    model = onnx.load(str(part_model), load_external_data=False)
    kept = [tensor for tensor in model.graph.initializer if tensor.name not in leave_out]
    for tensor in kept:
        if uses_external_data(tensor):
            load_external_data_for_tensor(tensor, str(part_model.parent))
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in kept}


def convert_to_ort(onnx_path: Path, ort_path: Path) -> tuple[str, ...]:
    """onnxruntime's own ORT-format conversion (what its convert_onnx_models_to_ort tool does); returns the part's
    weights the file no longer holds as they were (ort_folded_weights).

    Basic optimizations only, so the file stays runnable by any execution provider.
    """
    create_session(onnx_path, save_to=ort_path, config={"session.save_model_format": "ORT"}, level=DEVICE_PART_LEVEL,
                   prepack=False)
    return ort_folded_weights(ort_path, onnx_path)


def ort_folded_weights(ort_path: Path, part_model: Path, *, values: bool = True) -> tuple[str, ...]:
    """The weights of the part `part_model` that its ORT-format file `ort_path` does not hold as they were.

    Writing the file, onnxruntime's basic optimizations fold weights into new ones (constant folding; Conv with a
    following BatchNormalization, Mul or Add), rewrite some in place (a transpose pushed into a per-channel
    constant keeps its name and takes another shape) and drop those left unread. Such a weight cannot be given to
    the file at load (add_initializer): a name the file no longer holds is ignored, and a value of the old shape
    breaks the node that reads the new one. A weight counts as held when the file has an initializer of its name,
    type, shape and (with `values`; without, for a file whose blob has changed since) bytes; anything the file
    keeps otherwise (strings, data outside the file) counts as not held. The file is read with onnxruntime's own
    flatbuffers reader.
    """
    held = _ort_initializers(ort_path)
    model = onnx.load(str(part_model), load_external_data=False)
    folded = []
    with ExitStack() as stack:
        blobs: dict[str, mmap.mmap] = {}
        for tensor in model.graph.initializer:
            ort_tensor = held.get(tensor.name)
            if ort_tensor is None or ort_tensor[:2] != (tensor.data_type, tuple(tensor.dims)) or ort_tensor[2] is None:
                folded.append(tensor.name)
            elif values and ort_tensor[2] != _tensor_bytes(tensor, part_model.parent, blobs, stack):
                folded.append(tensor.name)
    return tuple(folded)


def _ort_initializers(ort_path: Path) -> dict[str, tuple[int, tuple[int, ...], bytes | None]]:
    """The initializers of an ORT-format file's main graph: (ONNX data type, dims, raw bytes; None where the file
    keeps the value otherwise), by name."""
    # onnxruntime's own reader of its format; importing its package puts the bindings (ort_flatbuffers_py) on the path
    import onnxruntime.tools.ort_format_model  # noqa: F401
    import ort_flatbuffers_py.fbs as fbs

    buffer = ort_path.read_bytes()
    session = fbs.InferenceSession.InferenceSession
    if not session.InferenceSessionBufferHasIdentifier(buffer, 0):
        raise SplitnnError(f"'{ort_path}' is not an ORT-format model: copy the plan folder again or partition again")
    graph = session.GetRootAs(buffer, 0).Model().Graph()
    tensors = {}
    for i in range(graph.InitializersLength()):
        tensor = graph.Initializers(i)
        raw = None if tensor.RawDataIsNone() or tensor.ExternalDataOffset() >= 0 else tensor.RawDataAsNumpy().tobytes()
        dims = tuple(int(d) for d in tensor.DimsAsNumpy()) if tensor.DimsLength() else ()
        tensors[tensor.Name().decode()] = (tensor.DataType(), dims, raw)
    return tensors


def _tensor_bytes(tensor: onnx.TensorProto, folder: Path, blobs: dict[str, mmap.mmap], stack: ExitStack) -> bytes:
    """A written part's weight as raw little-endian bytes, read from its blob in place where it lies there."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor).tobytes()
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info["location"]
    if location not in blobs:
        handle = stack.enter_context(open(folder / location, "rb"))
        blobs[location] = stack.enter_context(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
    offset = int(info.get("offset", 0))
    length = int(info["length"]) if "length" in info else len(blobs[location]) - offset
    return blobs[location][offset:offset + length]

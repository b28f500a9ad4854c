"""Load an ONNX file into a Graph: fixed input shapes, every tensor's shape resolved.

Steps, each a function below:
1. read the graph without the weight bytes (skeleton.read_skeleton);
2. check that external weight files exist and are long enough (sizes only);
3. fix the input shapes from the caller's overrides, or refuse open dimensions;
4. onnx's shape inference with data propagation, which folds Constant nodes
   and Shape->Gather->Reshape chains on its own and needs no weights;
5. only for tensors still open: one onnxruntime run on a zero input, with those
   tensors added as outputs (this reads the weights, so it comes last).
Node and tensor names are never changed, so every figure maps back to the file.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import (
    Graph,
    InitializerInfo,
    build_graph,
    np_dtype_name,
)
from splitnn.onnxsplit.model.input_shapes import ANY_INPUT, format_shape
from splitnn.onnxsplit.model.skeleton import InlinePayload, read_skeleton
from splitnn.onnxsplit.model.weight_source import open_in_place

ShapeMap = dict[str, tuple[tuple[int, ...], str]]


def load_graph(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Graph:
    """Load `path` and resolve every tensor's shape; see the module docstring."""
    path = Path(path)
    model, payloads = read_skeleton(path)
    initializers = describe_initializers(model, payloads)
    check_external_data(path, initializers)
    fix_input_shapes(model, dict(input_shapes or {}), set(initializers))
    _check_input_sizes(model, set(initializers))
    shapes, notes = resolve_shapes(model, path, initializers)
    write_value_info(model, shapes, set(initializers))
    return build_graph(model, path, shapes, initializers, tuple(notes))


# No input of a model splitnn plans for is this large; a larger one is a mistyped --input-shape.
MAX_INPUT_BYTES = 2**34  # 16 GiB


def _check_input_sizes(model: onnx.ModelProto, initializer_names: set[str]) -> None:
    """Refuse inputs whose fixed shapes would not fit in memory, before anything is allocated for them."""
    for vi in model.graph.input:
        if vi.name in initializer_names:
            continue
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        itemsize = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).itemsize
        nbytes = math.prod(dims) * itemsize
        if nbytes > MAX_INPUT_BYTES:
            size = f"{nbytes / 2**40:.1f} TiB" if nbytes >= 2**40 else f"{nbytes / 2**30:.1f} GiB"
            raise SplitnnError(f"input '{vi.name}' of shape {format_shape(dims)} would take {size} "
                               f"(more than {MAX_INPUT_BYTES // 2**30} GiB): check --input-shape")


def describe_initializers(model: onnx.ModelProto, payloads: Mapping[str, InlinePayload]) -> dict[str, InitializerInfo]:
    infos: dict[str, InitializerInfo] = {}
    for tensor in model.graph.initializer:
        dtype = np_dtype_name(tensor.data_type)
        shape = tuple(int(d) for d in tensor.dims)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        common = {"name": tensor.name, "shape": shape, "dtype": dtype, "nbytes": nbytes}
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            infos[tensor.name] = InitializerInfo(
                **common,
                location="external",
                file=entries.get("location"),
                offset=int(entries.get("offset", 0)),
                length=int(entries["length"]) if "length" in entries else nbytes,
            )
        else:
            payload = payloads.get(tensor.name)
            infos[tensor.name] = InitializerInfo(
                **common,
                location="inline",
                offset=payload.offset if payload else None,
                length=payload.length if payload else None,
                raw=payload.is_raw if payload else True,
                message_offset=payload.message_offset if payload else None,
                message_length=payload.message_length if payload else None,
            )
    return infos


def check_external_data(path: Path, initializers: Mapping[str, InitializerInfo]) -> None:
    """Every external weight's file exists beside the model and holds its bytes."""
    sizes: dict[str, int] = {}
    for info in initializers.values():
        if info.location != "external":
            continue
        if not info.file:
            raise SplitnnError(f"initializer '{info.name}' is external but names no data file: re-export the model")
        if info.file not in sizes:
            data_path = path.parent / info.file
            if not data_path.is_file():
                raise SplitnnError(
                    f"weights file '{info.file}' (initializer '{info.name}') is missing next to '{path}': "
                    "copy it into the model's folder, or re-export the model with inline weights"
                )
            sizes[info.file] = data_path.stat().st_size
        end = (info.offset or 0) + (info.length or 0)
        if sizes[info.file] < end:
            raise SplitnnError(
                f"weights file '{info.file}' is {sizes[info.file]} bytes but initializer '{info.name}' needs bytes up to {end}: "
                "the file is truncated; copy it again"
            )


def _declared_dims(value_info: onnx.ValueInfoProto) -> list[int | str] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]


def fix_input_shapes(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]], initializer_names: set[str]) -> None:
    """Write the overrides into the model's input shapes; refuse inputs left open."""
    real_inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    names = [vi.name for vi in real_inputs]
    if ANY_INPUT in overrides:
        if len(real_inputs) != 1:
            raise SplitnnError(
                f"a bare --input-shape needs a model with one input, but this one has {len(names)}: "
                f"write NAME:DIMS, names: {', '.join(names)}"
            )
        overrides = {names[0]: overrides[ANY_INPUT]}
    unknown = [name for name in overrides if name not in names]
    if unknown:
        raise SplitnnError(f"--input-shape names '{unknown[0]}', which is not an input of the model; its inputs: {', '.join(names)}")
    for vi in real_inputs:
        if not vi.type.HasField("tensor_type"):
            raise SplitnnError(f"input '{vi.name}' is not a tensor (sequence, map or optional inputs are not supported)")
        declared = _declared_dims(vi)
        if vi.name in overrides:
            shape = overrides[vi.name]
            if declared is not None and len(declared) != len(shape):
                raise SplitnnError(
                    f"--input-shape gives input '{vi.name}' rank {len(shape)}, but the model declares rank {len(declared)} "
                    f"({format_shape(declared)}): give {len(declared)} dimensions"
                )
        else:
            if declared is None or any(not isinstance(d, int) or d <= 0 for d in declared):
                shown = format_shape(declared) if declared is not None else "unknown rank"
                example = format_shape(_example_dims(declared))
                raise SplitnnError(
                    f"input '{vi.name}' has an open shape ({shown}): fix it with --input-shape, "
                    f"e.g. {vi.name}:{example} (with the sizes you run at)"
                )
            continue
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for value in shape:
            dims.add().dim_value = value


def _example_dims(declared: list[int | str] | None) -> list[int]:
    """A plausible shape to suggest: batch 1, image-like sizes for an open NCHW plane."""
    if declared is None:
        return [1, 3, 224, 224]
    example = []
    for axis, dim in enumerate(declared):
        if isinstance(dim, int) and dim > 0:
            example.append(dim)
        else:
            example.append(224 if len(declared) == 4 and axis >= 2 else 1)
    return example


def _static(value_info: onnx.ValueInfoProto) -> tuple[tuple[int, ...], str] | None:
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape") or tensor_type.elem_type == 0:
        return None
    dims = tensor_type.shape.dim
    if not all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims), np_dtype_name(tensor_type.elem_type)


def resolve_shapes(
    model: onnx.ModelProto, path: Path | None, initializers: Mapping[str, InitializerInfo]
) -> tuple[ShapeMap, list[str]]:
    """Static shape and dtype of every graph input, node output and graph output."""
    initializer_names = set(initializers)
    needed = [vi.name for vi in model.graph.input if vi.name not in initializer_names]
    needed += [out for node in model.graph.node for out in node.output if out]
    needed += [vi.name for vi in model.graph.output if vi.name not in initializer_names]
    needed = list(dict.fromkeys(needed))

    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError or RuntimeError
        raise SplitnnError(f"onnx shape inference rejects the model: {str(exc).splitlines()[0]}") from None

    shapes: ShapeMap = {}
    graph = inferred.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        resolved = _static(vi)
        if resolved is not None:
            shapes.setdefault(vi.name, resolved)
    # A declared output shape can be stale (e.g. [-1, 2]); the inferred value_info wins above.
    open_names = [name for name in needed if name not in shapes]
    notes: list[str] = []
    if open_names:
        shapes.update(probe_shapes(model, path, open_names, initializers))
        notes.append(
            f"{len(open_names)} tensor shapes that onnx shape inference left open were read from one "
            "onnxruntime run on a zero input"
        )
    return shapes, notes


def probe_shapes(
    skeleton: onnx.ModelProto, path: Path | None, names: list[str], initializers: Mapping[str, InitializerInfo]
) -> ShapeMap:
    """Run the model once on zeros with `names` as extra outputs and read their shapes.

    The weights are mapped from the model's files, never parsed into memory.
    """
    if path is None:
        raise SplitnnError("the model has open shapes and no file to load its weights from for a probe run")
    probe = onnx.ModelProto()
    probe.CopyFrom(skeleton)
    existing = {vi.name for vi in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names if name not in existing)
    initializer_names = set(initializers)
    feeds: dict[str, np.ndarray] = {}
    for vi in skeleton.graph.input:
        if vi.name in initializer_names:
            continue
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = np.zeros(dims, dtype=helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    try:
        session = open_in_place(probe, initializers, path, level="none")
        values = session.run(names, feeds)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SplitnnError(
            f"shape inference left {len(names)} tensors open (first '{names[0]}') and onnxruntime cannot run the model "
            f"to measure them ({first}): check --input-shape and that the model is valid"
        ) from None
    result: ShapeMap = {}
    for name, value in zip(names, values):
        array = np.asarray(value)
        result[name] = (tuple(int(d) for d in array.shape), array.dtype.name)
    return result


def write_value_info(model: onnx.ModelProto, shapes: ShapeMap, initializer_names: set[str]) -> None:
    """Record every resolved intermediate shape in the skeleton, so extracted parts are self-describing."""
    io_names = {vi.name for vi in model.graph.input} | {vi.name for vi in model.graph.output}
    del model.graph.value_info[:]
    for name, (shape, dtype) in shapes.items():
        if name in io_names or name in initializer_names:
            continue
        model.graph.value_info.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape))
    for vi in model.graph.output:
        if vi.name in shapes:
            shape, dtype = shapes[vi.name]
            vi.type.CopyFrom(helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape))

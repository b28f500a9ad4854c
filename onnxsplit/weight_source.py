"""Read one weight's bytes from where the model keeps it, without loading the model.

The skeleton reader recorded where each large initializer's payload lies
(inside the .onnx file, or in an external data file). Copying those byte
ranges into a part's blob is one read and one write per weight, never a
whole ModelProto in memory, so parts of models over 2 GB can be written too.
"""
from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxsplit.graph import Graph


class WeightSource:
    """Raw little-endian bytes of every initializer of `graph`, by name."""

    def __init__(self, graph: Graph) -> None:
        assert graph.path is not None
        self.graph = graph
        self.folder = graph.path.parent
        self._maps: dict[Path, tuple[object, mmap.mmap]] = {}
        self._skeleton = {t.name: t for t in graph.model.graph.initializer}

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            handle = open(path, "rb")
            self._maps[path] = (handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        return self._maps[path][1]

    def read(self, name: str) -> bytes | memoryview:
        info = self.graph.initializers[name]
        if info.location == "external":
            buf = self._map(self.folder / str(info.file))
            return memoryview(buf)[info.offset : info.offset + info.length]  # type: ignore[operator]
        if info.offset is None:  # small: its data stayed in the skeleton
            return numpy_helper.to_array(self._skeleton[name]).tobytes()
        buf = self._map(self.graph.path)  # type: ignore[arg-type]
        if info.raw:
            return memoryview(buf)[info.offset : info.offset + info.length]  # type: ignore[operator]
        tensor = onnx.TensorProto()  # typed fields (float_data, ...): let protobuf decode the message
        tensor.ParseFromString(bytes(buf[info.message_offset : info.message_offset + info.message_length]))  # type: ignore[operator]
        return numpy_helper.to_array(tensor).astype(np.dtype(info.dtype)).tobytes()

    def close(self) -> None:
        for handle, buf in self._maps.values():
            buf.close()
            handle.close()  # type: ignore[attr-defined]
        self._maps.clear()

    def __enter__(self) -> "WeightSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

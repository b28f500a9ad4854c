"""A small graph builder for the sample networks: layers in, ONNX model out.

Weights are drawn from a seeded generator (He-normal), so a sample is the same
bytes on every machine. Shapes are tracked as the layers are added, so that a
classifier's input size follows the chosen input resolution.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from splitnn.onnxsplit.core.errors import SplitnnError

OPSET = 13
IR_VERSION = 8


class GraphBuilder:
    def __init__(self, name: str, seed: int = 0) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._counts: dict[str, int] = {}

    # -- naming and weights -------------------------------------------------
    def _name(self, kind: str) -> str:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}{self._counts[kind]}"

    def _weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def _he(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        std = math.sqrt(2.0 / fan_in)
        return self._weight(name, self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def _small(self, name: str, shape: tuple[int, ...]) -> str:
        return self._weight(name, self.rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01))

    def _node(self, op: str, inputs: list[str], out_shape: tuple[int, ...], name: str, **attrs: Any) -> str:
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        self.shapes[out] = out_shape
        return out

    # -- layers -------------------------------------------------------------
    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.shapes[name] = shape
        return name

    def conv(self, x: str, cout: int, k: int, stride: int = 1, pad: int = 0, group: int = 1, bias: bool = True) -> str:
        n, cin, h, w = self.shapes[x]
        name = self._name("conv")
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if oh < 1 or ow < 1:
            raise SplitnnError(f"input too small for {self.name}: layer {name} would produce a {oh}x{ow} map; use a larger --input-size")
        inputs = [x, self._he(f"{name}.weight", (cout, cin // group, k, k), cin // group * k * k)]
        if bias:
            inputs.append(self._small(f"{name}.bias", (cout,)))
        return self._node("Conv", inputs, (n, cout, oh, ow), name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def batch_norm(self, x: str) -> str:
        c = self.shapes[x][1]
        name = self._name("bn")
        inputs = [
            x,
            self._weight(f"{name}.weight", 1.0 + 0.1 * self.rng.standard_normal(c)),
            self._small(f"{name}.bias", (c,)),
            self._small(f"{name}.running_mean", (c,)),
            self._weight(f"{name}.running_var", 1.0 + 0.1 * self.rng.random(c)),
        ]
        return self._node("BatchNormalization", inputs, self.shapes[x], name, epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shapes[x], self._name("relu"))

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a], self._name("add"))

    def pool(self, x: str, op: str, k: int, stride: int, pad: int = 0) -> str:
        n, c, h, w = self.shapes[x]
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        name = self._name(op.lower())
        if oh < 1 or ow < 1:
            raise SplitnnError(f"input too small for {self.name}: layer {name} would produce a {oh}x{ow} map; use a larger --input-size")
        return self._node(op, [x], (n, c, oh, ow), name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def global_avg_pool(self, x: str) -> str:
        n, c, _, _ = self.shapes[x]
        return self._node("GlobalAveragePool", [x], (n, c, 1, 1), self._name("gap"))

    def flatten(self, x: str) -> str:
        shape = self.shapes[x]
        return self._node("Flatten", [x], (shape[0], math.prod(shape[1:])), self._name("flatten"), axis=1)

    def linear(self, x: str, out_features: int) -> str:
        n, fin = self.shapes[x]
        name = self._name("fc")
        inputs = [x, self._he(f"{name}.weight", (out_features, fin), fin), self._small(f"{name}.bias", (out_features,))]
        return self._node("Gemm", inputs, (n, out_features), name, transB=1)

    def build(self, output: str) -> onnx.ModelProto:
        out_info = helper.make_tensor_value_info(output, TensorProto.FLOAT, list(self.shapes[output]))
        graph = helper.make_graph(self.nodes, self.name, self.inputs, [out_info], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="splitnn.sample_models")
        model.ir_version = IR_VERSION
        return model

"""Check written parts against the original model: the reference outputs and the comparison.

The original runs with its weights mapped in place from the source file, never
from the parts being checked.

An int8 model is checked twice (issue 30, items 0 and 5), because onnxruntime
does not compute it the same way whole and in parts:

- At its "extended" level and above, onnxruntime rewrites each QDQ group
  (DequantizeLinear -> Conv/MatMul/Gemm/Add/... -> QuantizeLinear) into one
  integer kernel (QLinearConv, QGemm, QLinearAdd, ...; QDQSelectorActionTransformer),
  its int8 activations first turned to uint8 on x86 (QDQS8ToU8Transformer).
  A group that a cut divides cannot be fused in either part, and the device
  part is converted at the basic level (DEVICE_PART_LEVEL), where nothing is
  fused: the parts compute those groups in float, the whole model in integers.
  Both are right, and they round differently: the outputs move by a step or
  two of their quantization, even at a cut through an int8 tensor.
- On an x86 CPU with AVX2 (or AVX-512) but no VNNI, MLAS's u8s8 kernel, which
  the fused groups run, adds pairs of products in saturating 16-bit lanes
  (vpmaddubsw; onnxruntime issues #14642, #16105): the fused whole model can
  then be wrong by far more than a step, while the unfused parts are exact. With VNNI
  (vpdpbusd) the sums are 32-bit and exact, which is why the same check passed
  on one machine and failed on another.

So the check that decides whether a split is right compares like with like:
every session, the whole model's and each part's, at UNFUSED_LEVEL (basic),
where no level-2 transformer runs. Nothing is fused, converted to uint8 or
repacked on either side, every operator runs as written (a QOperator model's
explicit QLinearConv too, with the same kernel whole and in the part), so the
chained parts must equal the model to the user's atol/rtol on every CPU. A
wrong part fails it, however small the change.

The second check compares the parts as they are served (the device's file, the
server part at onnxruntime's default level) with the model as onnxruntime runs
it whole on this machine, fused: what run-bench and a user running the model
unsplit see. What the fusions move there is measured and allowed for in whole
steps of the output's quantization (the scale of the DequantizeLinear that
gives each output), at least one; the plan states the allowance
(Verification.int8_allowance, quantization_step), its atol includes it, and
run-bench holds the served parts to it. On a CPU without VNNI it also holds
what saturation moved: stated, not hidden.

The session option `session.x64quantprecision` (kOrtSessionOptionsAvx2PrecisionMode,
onnxruntime_session_options_config_keys.h) would avoid the saturation: where
MLAS's u8u8 and u8s8 kernels differ (MlasPlatformU8S8Overflow: x86 with AVX2),
its Avx2WeightS8ToU8Transformer turns int8 weights to uint8 for the u8u8 kernel.
It is not set: it acts at level 2 only, so never on the device's .ort (basic),
and with onnxruntime 1.32.0 a QOperator model with int8 activations then fails
to load (its QGemm is left with int8 activations and uint8 weights, a pair no
kernel takes: "Failed to find kernel for com.microsoft.QGemm").

MLAS picks its kernels from CPUID alone (platform.cpp; no variable or option
turns VNNI off), so the non-VNNI path cannot be forced on a CPU that has VNNI:
the tests check that the like-with-like sessions run no fused kernel instead.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnx import numpy_helper

from splitnn.onnxsplit.artifacts.chain import PartStep, cached_sessions, run_steps
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL, create_session
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.weight_source import WeightSource, open_in_place


@dataclass(frozen=True)
class Verification:
    """How the written parts compared with the original model on the verification input.

    For an int8 model (`quantization_step` or `unfused_max_abs_err` set): `max_abs_err` is the parts as served
    against the model as onnxruntime fuses it, and `atol` the bound they were held to (and run-bench holds them to):
    the atol asked for plus `int8_allowance`. `unfused_max_abs_err` is the check that decided: the parts against
    the model with every session unfused (UNFUSED_LEVEL), held to the atol asked for.
    """

    max_abs_err: float
    atol: float
    rtol: float
    passed: bool
    device_artifact: str | None = None  # a split's device file that was chained: the .ort when written, else the .onnx
    unfused_max_abs_err: float | None = None  # int8: the chained parts against the model, both unfused
    quantization_step: float | None = None  # int8: the outputs' quantization step (None: not derived)
    int8_allowance: float | None = None  # int8: what atol allows beyond the atol asked for, whole steps when derived

    @property
    def asked_atol(self) -> float:
        """The atol the user asked for (an int8 model's atol includes the allowance for onnxruntime's fusions)."""
        return self.atol - (self.int8_allowance or 0.0)

    def int8_note(self) -> str | None:
        """One line on how an int8 model was verified (None for another model)."""
        if self.unfused_max_abs_err is None:
            return None
        allowance = self.int8_allowance or 0.0
        if self.quantization_step:
            steps = round(allowance / self.quantization_step)
            plural = "s" if steps != 1 else ""
            allowed = f"{steps} step{plural} of the output's quantization ({self.quantization_step:.3g})"
        else:
            allowed = f"{allowance:.3g}, measured (the outputs' quantization step could not be derived)"
        return (f"int8 model: the parts equal the model with both run unfused (max abs error "
                f"{self.unfused_max_abs_err:.3g}, atol {self.asked_atol:.3g}); against the model as onnxruntime fuses "
                f"it, atol {self.atol:.3g} allows {allowed}")


# Verification sessions run once each, two at a time: repacking weights for
# faster repeated runs would only cost time, and idle threads must not spin
# on the cores the other session is using.
VERIFY_CONFIG = {"session.intra_op.allow_spinning": "0"}

# The level of every session of the like-with-like check of an int8 model: the device part's, where onnxruntime
# fuses no QDQ group and converts nothing to uint8 (those are level-2 transformers).
UNFUSED_LEVEL = DEVICE_PART_LEVEL

# Operators of a quantized model: QDQ (QuantizeLinear, DequantizeLinear), QOperator, dynamic quantization.
_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                       "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM", "QAttention"})

# Operators that move no output element by more than the largest change of an input element (a difference of one
# step before them stays within one step after them): the path from an output back to its DequantizeLinear.
_STEP_KEEPING = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Relu", "MaxPool",
                           "GlobalMaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceMax", "ReduceMin",
                           "Slice", "Gather", "Concat", "Split", "Softmax", "Sigmoid", "Clip"})


def is_int8_model(graph: Graph) -> bool:
    """Whether the model quantizes anything (QDQ, QOperator or dynamic): it is then verified twice (see above)."""
    return any(node.op_type in _INT8_OPS or node.op_type.startswith("QLinear") for node in graph.nodes)


def output_quantization_step(graph: Graph) -> float | None:
    """The largest quantization step of the model's outputs: the scale of the DequantizeLinear each one comes from
    (through operators that keep a step a step); None where an output comes from anything else."""
    producer = {name: node for node in graph.nodes for name in node.outputs}
    with _Constants(graph) as constants:
        steps = [_step_of(name, producer, constants, depth=0) for name in graph.outputs]
    known = [step for step in steps if step is not None]
    if not steps or len(known) < len(steps):
        return None
    return max(known)


def _step_of(name: str, producer: Mapping[str, Any], constants: "_Constants", depth: int) -> float | None:
    node = producer.get(name)
    if node is None or depth > 64:
        return None
    if node.op_type == "DequantizeLinear":
        scale = constants.value(node.inputs[1])
        return float(np.max(np.abs(scale))) if scale is not None and scale.size else None
    if node.op_type not in _STEP_KEEPING:
        return None
    sources = [n for n in node.inputs if n] if node.op_type == "Concat" else node.inputs[:1]
    steps = [_step_of(source, producer, constants, depth + 1) for source in sources]
    known = [s for s in steps if s is not None]
    return None if not steps or len(known) < len(steps) else max(known)


class _Constants:
    """Small constant values of the graph (initializers read from the source file, Constant nodes)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.weights = WeightSource.of(graph) if graph.path is not None else None

    def value(self, name: str) -> np.ndarray | None:
        info = self.graph.initializers.get(name)
        if info is not None and self.weights is not None:
            return np.frombuffer(bytes(self.weights.read(name)), dtype=np.dtype(info.dtype))
        node = next((n for n in self.graph.nodes if n.op_type == "Constant" and name in n.outputs), None)
        value = node.attrs.get("value") if node is not None else None
        return numpy_helper.to_array(value) if value is not None else None

    def __enter__(self) -> "_Constants":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.weights is not None:
            self.weights.close()


def verification_session(path: Path, level: str | None = None):
    return create_session(path, prepack=False, config=VERIFY_CONFIG, level=level)


def reference_outputs(graph: Graph, feeds: dict[str, np.ndarray], level: str | None = None) -> dict[str, np.ndarray]:
    """The original model's outputs, its weights read in place from the source file (not from the parts); at
    onnxruntime's default level unless `level` is given (UNFUSED_LEVEL: an int8 model's like-with-like check)."""
    original = open_in_place(graph.model, graph.initializers, graph.model_file, prepack=False,
                             config=VERIFY_CONFIG, level=level)
    return dict(zip(graph.outputs, original.run(list(graph.outputs), feeds)))


@dataclass(frozen=True)
class References:
    """The model's outputs on the verification input (reference_outputs) and, for an int8 model, its outputs with
    nothing fused (UNFUSED_LEVEL) and its outputs' quantization step: what its parts are checked against."""

    outputs: dict[str, np.ndarray]
    unfused: dict[str, np.ndarray] | None = None
    step: float | None = None


def model_references(graph: Graph, feeds: dict[str, np.ndarray]) -> References:
    """The References of `graph` on `feeds`: an int8 model runs twice, once unfused."""
    outputs = reference_outputs(graph, feeds)
    if not is_int8_model(graph):
        return References(outputs)
    return References(outputs, reference_outputs(graph, feeds, UNFUSED_LEVEL), output_quantization_step(graph))


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


def unfused_max_error(folder: Path, chains: Sequence[Sequence[PartStep]], computed: Mapping[str, np.ndarray],
                      reference: dict[str, np.ndarray], atol: float, rtol: float,
                      session_of: Callable[[str], Any] | None = None) -> tuple[float, bool]:
    """The like-with-like check of an int8 model's parts: each chain of steps (model paths relative to `folder`) run
    at UNFUSED_LEVEL on `computed` (the inputs, and what was already computed at that level: a device .ort's outputs)
    against `reference` (the model at UNFUSED_LEVEL); the worst difference, and whether every chain is within
    tolerance."""
    session_of = session_of or cached_sessions(lambda model: verification_session(folder / model, UNFUSED_LEVEL))
    worst, passed = 0.0, True
    for steps in chains:
        pool = run_steps(steps, dict(computed), session_of)
        error, ok = compare_outputs({name: pool[name] for name in reference if name in pool}, reference, atol, rtol)
        worst, passed = max(worst, error), passed and ok
    return worst, passed


def settle_int8(check: Verification, unfused: tuple[float, bool], step: float | None, what: str) -> Verification:
    """An int8 model's verification: refused (SplitnnError) where the like-with-like check `unfused` (its worst
    difference and whether it passed) failed; else `check` (the parts as served against the model fused) with what
    onnxruntime's fusions moved allowed for in whole output quantization steps (`step`, at least one), or as measured
    where no step was derived (None), and stated."""
    error, passed = unfused
    if not passed:
        raise SplitnnError(
            f"verification failed: {what} differ from the model by up to {error:.3g} with both run unfused at "
            f"onnxruntime's {UNFUSED_LEVEL} level (atol {check.atol}, rtol {check.rtol}); nothing was written; loosen "
            "--atol/--rtol if this precision is expected")
    if step:  # a difference of k steps computed in float32 is k * step within its rounding, never k + 1 steps
        allowance = max(max(1, math.ceil(check.max_abs_err / step - 1e-3)) * step, check.max_abs_err)
    else:
        allowance = 0.0 if check.passed else check.max_abs_err
    return dataclasses.replace(check, atol=check.atol + allowance, passed=True, unfused_max_abs_err=error,
                               quantization_step=step, int8_allowance=allowance)

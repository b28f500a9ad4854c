"""The `host` device profile: this machine, measured with onnxruntime.

One small graph per operator class is timed (median of runs, after warm-up), at
the optimization level of the device's ORT-format part (DEVICE_PART_LEVEL: at
onnxruntime's default level a depthwise convolution runs several times faster
than the same shape inside a device part: docs/measurements.md); a narrow dense
convolution (16 channels) gives the width from which dense convolutions run
at the full rate; depthwise convolutions with wide, narrow and strided rows
give that class's full rate and its row efficiency (cost_models.latency). The
activations' bandwidth is onnxruntime adding two layer-sized tensors, which
stay in the caches, and the weights' bandwidth a vector times a matrix larger
than the caches; the elementwise rate is a Relu of a layer-sized tensor, the
transcendental rate a Sigmoid of it, and the strided softmax rate a Softmax
over axis 1 of YOLOv8's box distribution (cost_models.op_classes); the
per-node overhead is the time per node of a chain of tiny Relu nodes; the
codecs' speed is cost_models/codec_probe's two references. The
result is cached as TOML under
$SPLITNN_CACHE_DIR (default ~/.cache/splitnn) so that later runs agree, with
when it was measured and how loaded the machine was then. A kept profile is
measured again when it is older than a week, was measured on another number of
cores, by older probes (PROBES), or was measured under load (more than half a
core busy per core) and the machine is quiet now: one cache written while the
machine was busy put dense convolution at a third of its real rate. Its power
is not measured: it is left unknown, and energy is not predicted with it.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from splitnn.cost_models.codec_probe import codec_reference_seconds
from splitnn.cost_models.profiles import (
    DeviceProfile,
    device_from_dict,
    device_to_toml,
    read_toml,
)
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL


SINGLE_THREAD = "host-1thread"  # this machine with onnxruntime on one thread: what a Dask tile worker runs


def cache_path(threads: int | None = None) -> Path:
    root = os.environ.get("SPLITNN_CACHE_DIR") or Path.home() / ".cache" / "splitnn"
    return Path(root) / ("host.toml" if threads is None else f"host-{threads}thread.toml")


def _time_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray], runs: int = 25, threads: int | None = None
                ) -> float:
    from splitnn.onnxsplit.core.ort_session import create_session, median_run_seconds

    return median_run_seconds(create_session(model, level=DEVICE_PART_LEVEL, threads=threads), feeds, runs)


def _as_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _single(op: str, x_shape: list[int], w_shape: list[int] | None, out: str = "y", **attrs: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w")] if w_shape else []
    node = helper.make_node(op, ["x", "w"] if w_shape else ["x"], [out], **attrs)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = _as_model(graph)
    return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


# A dense convolution's pixel overhead (cost_models.latency): not measured by a probe, since convolutions timed
# alone lost far more at few pixels than the same shapes inside a model (3x3, 256 channels at 14x14: 122 against
# 179 GMAC/s). From the kernel times of six models on this x86 host (ResNet-18, MobileNet, AlexNet, VGG-16, the
# PP-OCR detector and recognizer), where 20 to 40 predicted the models left out of a fit best; `splitnn profile`
# fits it to the user's models.
HOST_PIXEL_OVERHEAD = 30.0
# The depthwise probes: rows of these widths (cost_models.latency's row efficiency), the strided one by 2.
WIDE_ROW, NARROW_ROW, STRIDED_ROW = 224, 14, 56
# Each probe is timed this many times, in turn with the others, and the median kept (_probe_rates).
ROUNDS = 3


def _add_probe(shape: list[int]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    node = helper.make_node("Add", ["x", "z"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "z")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = _as_model(graph)
    return model, {n: rng.standard_normal(shape).astype(np.float32) for n in ("x", "z")}


def _chain_probe() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    chain = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(200)]
    graph = helper.make_graph(chain, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("t200", TensorProto.FLOAT, [4])])
    model = _as_model(graph)
    return model, {"t0": np.ones(4, dtype=np.float32)}


def _depthwise(channels: int, height: int, width: int, stride: int) -> tuple[tuple[onnx.ModelProto, dict[str, np.ndarray]], float]:
    probe = _single("Conv", [1, channels, height, width], [channels, 1, 3, 3], pads=[1, 1, 1, 1], group=channels,
                    strides=[stride, stride])
    return probe, channels * (height // stride) * (width // stride) * 9


def _probes() -> dict[str, tuple[tuple[onnx.ModelProto, dict[str, np.ndarray]], float]]:
    """Each probe's graph and feeds, and its work: MACs, elements, bytes or nodes, whose rate it measures."""
    return {
        "dense_conv": (_single("Conv", [1, 128, 56, 56], [128, 128, 3, 3], pads=[1, 1, 1, 1]), 56 * 56 * 128 * 128 * 9),
        "narrow_conv": (_single("Conv", [1, 16, 112, 112], [16, 16, 3, 3], pads=[1, 1, 1, 1]), 112 * 112 * 16 * 16 * 9),
        "wide_rows": _depthwise(64, 32, WIDE_ROW, 1),
        "narrow_rows": _depthwise(1024, 14, NARROW_ROW, 1),
        "strided_rows": _depthwise(128, 56, STRIDED_ROW, 2),
        "matmul": (_single("MatMul", [256, 1024], [1024, 1024]), 256 * 1024 * 1024),
        # The cheapest common elementwise operator: in the caches, as bound by memory as by arithmetic.
        "elementwise": (_single("Relu", [1, 128, 56, 56], None), 128 * 56 * 56),
        "transcendental": (_single("Sigmoid", [1, 128, 56, 56], None), 128 * 56 * 56),
        # Three operations per element (cost_models/operators/reduce.py), over YOLOv8's box distribution.
        "strided_softmax": (_single("Softmax", [1, 16, 4, 2100], None, axis=1), 3 * 16 * 4 * 2100),
        # The activations' bandwidth: onnxruntime adding two layer-sized tensors (1.6 MB each), which stay in the
        # caches as a layer's activations do (several times a large copy's bandwidth: docs/measurements.md).
        "activations": (_add_probe([1, 128, 56, 56]), 3 * 4 * 128 * 56 * 56),
        # The weights': a vector times a 128 MB matrix, each weight read once from DRAM, as a fully connected layer.
        "weights": (_single("MatMul", [1, 4096], [4096, 8192]), 4096 * 8192 * 4),
        "nodes": (_chain_probe(), 200),
    }


def _probe_rates(threads: int | None = None) -> dict[str, float]:
    """Each probe's work per second: the median of 25 runs, ROUNDS times in turn with the other probes, the
    median of those kept. A probe slowed by another process on a shared machine is slowed for all its runs
    (one wide depthwise probe ran at half its rate and put the row overhead at 2.6 instead of 24), and the
    fastest of the rounds is no cure: the 128 MB matrix once streamed at 88 GB/s against 40 to 50 in every
    other measurement. A first throw-away probe warms the machine up (the first probe after idle ran 10% slow)."""
    probes = _probes()
    _time_model(*probes["dense_conv"][0], threads=threads)
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(ROUNDS):
        for name, (probe, _work) in probes.items():
            times[name].append(_time_model(*probe, threads=threads))
    return {name: work / statistics.median(times[name]) for name, (_probe, work) in probes.items()}


def _depthwise_figures(rate: dict[str, float]) -> tuple[float, float, float]:
    """The depthwise class's full rate, its row overhead (columns) and its strided efficiency, from three 3x3
    depthwise convolutions: wide rows, narrow rows, and wide rows stepped by 2.

    With rate(w) = full * w / (w + w0), the narrow-to-wide ratio q gives w0 = W N (1 - q) / (W q - N)."""
    ratio = min(rate["narrow_rows"] / rate["wide_rows"], 1.0)
    overhead = 0.0 if ratio >= 1 else min(1000.0, WIDE_ROW * NARROW_ROW * (1 - ratio) / max(WIDE_ROW * ratio - NARROW_ROW, 1e-3))
    full = rate["wide_rows"] * (WIDE_ROW + overhead) / WIDE_ROW
    strided_row = STRIDED_ROW // 2
    strided = rate["strided_rows"] / (full * strided_row / (strided_row + overhead))
    return full, overhead, min(strided, 1.0)


def measure_host(threads: int | None = None) -> DeviceProfile:
    """This machine's profile, onnxruntime on `threads` threads (None: its default, one per core)."""
    rate = _probe_rates(threads)
    rates = {name: rate[name] for name in ("dense_conv", "matmul", "elementwise", "transcendental", "strided_softmax")}
    # 16 channels run at sqrt(16 / full) of the full rate (cost_models.latency), so full = 16 / (narrow / rate)^2.
    full_channels = min(1024.0, 16 / min(1.0, rate["narrow_conv"] / rates["dense_conv"]) ** 2)
    rates["depthwise_conv"], row_overhead, strided = _depthwise_figures(rate)
    bandwidth, weight_bandwidth, overhead = rate["activations"], rate["weights"], 1 / rate["nodes"]

    ram_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    gmac = {name: round(rate / 1e9, 3) for name, rate in rates.items()}
    image_codec_s, array_codec_s = codec_reference_seconds()
    return device_from_dict(
        {
            "name": "host" if threads is None else f"host-{threads}thread",
            "description": "this machine, measured with onnxruntime" + (
                "" if threads is None else f" on {threads} thread{'s' if threads > 1 else ''}"),
            "compute": {**{f"{k}_gmac_per_s": v for k, v in gmac.items()}, "per_node_overhead_ms": round(overhead * 1000, 4),
                        "dense_conv_full_channels": round(full_channels, 1), "depthwise_row_overhead": round(row_overhead, 2),
                        "depthwise_strided_efficiency": round(strided, 3), "dense_conv_pixel_overhead": HOST_PIXEL_OVERHEAD},
            "memory": {"bandwidth_gb_per_s": round(bandwidth / 1e9, 3), "weight_bandwidth_gb_per_s": round(weight_bandwidth / 1e9, 3),
                       "ram_gb": ram_bytes / 1e9, "usable_fraction": 0.8},
            "codecs": {"image_reference_ms": round(image_codec_s * 1000, 4),
                       "array_reference_ms": round(array_codec_s * 1000, 4)},
        },
        "measured",
    )


MAX_AGE_S = 7 * 24 * 3600
# The version of the micro-benchmarks above; a kept profile measured by another is measured again.
# 2: depthwise rows, the activations' bandwidth in the caches, the weights' from a matrix in DRAM; 3: the dense
# convolutions' pixel overhead, and each probe the median of ROUNDS; 4: the transcendental and strided softmax
# classes; 5: the codec references (cost_models/codec_probe).
PROBES = 5
BUSY_LOAD_PER_CORE = 0.5


def load_per_core() -> float:
    """The 1-minute load average per core (0 where the platform has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def is_stale(measurement: dict[str, Any], now: float, load_now: float) -> str:
    """Why a kept host profile should be measured again (empty: it is good)."""
    try:
        measured_at, load_then, cpus = (float(measurement[k]) for k in ("measured_at", "load_per_core", "cpus"))
    except (KeyError, TypeError, ValueError):
        return "it does not say when it was measured"
    if measurement.get("probes") != PROBES:
        return "it was measured by an older set of micro-benchmarks"
    if measurement.get("level") != DEVICE_PART_LEVEL:
        return f"it was not measured at the device part's optimization level ({DEVICE_PART_LEVEL})"
    if now - measured_at > MAX_AGE_S:
        return "it is more than a week old"
    if int(cpus) != (os.cpu_count() or 1):
        return "it was measured on another number of cores"
    if load_then > BUSY_LOAD_PER_CORE >= load_now:
        return f"it was measured under load ({load_then:.2f} per core) and the machine is quiet now"
    return ""


def host_profile(refresh: bool = False, threads: int | None = None) -> DeviceProfile:
    """This machine's profile (onnxruntime on `threads` threads; None: one per core): from the cache while it is
    good (see the module doc), else measured (a few seconds) and cached."""
    from splitnn.onnxsplit.core.atomic_files import write_text_atomic

    path = cache_path(threads)
    if path.is_file() and not refresh:
        data = read_toml(path, "cached host profile")
        if not is_stale(data.get("measurement", {}), time.time(), load_per_core()):
            return device_from_dict(data, f"measured:{path}")
    load = load_per_core()
    profile = measure_host(threads)
    record = (f"\n[measurement]\nmeasured_at = {time.time():.0f}\nload_per_core = {max(load, load_per_core()):.3f}\n"
              f"cpus = {os.cpu_count() or 1}\nlevel = \"{DEVICE_PART_LEVEL}\"\nprobes = {PROBES}\n")
    write_text_atomic(path, device_to_toml(profile, ["Measured by splitnn on this machine (cost_models/host.py); delete to "
                                                     "measure again."]) + record)
    return device_from_dict(read_toml(path, "cached host profile"), f"measured:{path}")

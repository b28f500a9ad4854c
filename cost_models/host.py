"""The `host` device profile: this machine, measured with onnxruntime.

One small graph per operator class is timed (median of runs, after warm-up), at
the optimization level of the device's ORT-format part (DEVICE_PART_LEVEL: at
onnxruntime's default level a depthwise convolution ran 3.2x faster than the
same shape inside a device part, 52 against 16 GMAC/s); a narrow dense
convolution (16 channels) gives the width from which dense convolutions run
at the full rate; memory bandwidth is a numpy copy; the per-node overhead is
the time per node of a chain of tiny Relu nodes. The result is cached as TOML under
$SPLITNN_CACHE_DIR (default ~/.cache/splitnn) so that later runs agree, with
when it was measured and how loaded the machine was then. A kept profile is
measured again when it is older than a week, was measured on another number of
cores, or was measured under load (more than half a core busy per core) and
the machine is quiet now: one cache written while the machine was busy put
dense convolution at a third of its real rate. Its power is not measured: it
is left unknown, and energy is not predicted with it.
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

from splitnn.cost_models.profiles import (
    DeviceProfile,
    device_from_dict,
    device_to_toml,
    read_toml,
)
from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL


def cache_path() -> Path:
    root = os.environ.get("SPLITNN_CACHE_DIR") or Path.home() / ".cache" / "splitnn"
    return Path(root) / "host.toml"


def _time_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray], runs: int = 7) -> float:
    from splitnn.onnxsplit.core.ort_session import create_session, median_run_seconds

    return median_run_seconds(create_session(model, level=DEVICE_PART_LEVEL), feeds, runs)


def _single(op: str, x_shape: list[int], w_shape: list[int] | None, out: str = "y", **attrs: object) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w")] if w_shape else []
    node = helper.make_node(op, ["x", "w"] if w_shape else ["x"], [out], **attrs)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


def measure_host() -> DeviceProfile:
    rates = {}
    model, feeds = _single("Conv", [1, 128, 56, 56], [128, 128, 3, 3], pads=[1, 1, 1, 1])
    rates["dense_conv"] = 56 * 56 * 128 * 128 * 9 / _time_model(model, feeds)
    model, feeds = _single("Conv", [1, 16, 112, 112], [16, 16, 3, 3], pads=[1, 1, 1, 1])
    narrow = 112 * 112 * 16 * 16 * 9 / _time_model(model, feeds)
    # 16 channels run at sqrt(16 / full) of the full rate (cost_models.latency), so full = 16 / (narrow / rate)^2.
    full_channels = min(1024.0, 16 / min(1.0, narrow / rates["dense_conv"]) ** 2)
    model, feeds = _single("Conv", [1, 256, 56, 56], [256, 1, 3, 3], pads=[1, 1, 1, 1], group=256)
    rates["depthwise_conv"] = 56 * 56 * 256 * 9 / _time_model(model, feeds)
    model, feeds = _single("MatMul", [256, 1024], [1024, 1024])
    rates["matmul"] = 256 * 1024 * 1024 / _time_model(model, feeds)
    model, feeds = _single("Sigmoid", [1, 64, 64, 64], None)
    rates["elementwise"] = 64**3 / _time_model(model, feeds)

    block = np.ones(64 * 1024 * 1024 // 4, dtype=np.float32)
    target = np.empty_like(block)
    copies = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, block)
        copies.append(time.perf_counter() - start)
    bandwidth = 2 * block.nbytes / statistics.median(copies)  # read + write

    chain = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(200)]
    graph = helper.make_graph(chain, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("t200", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    overhead = _time_model(model, {"t0": np.ones(4, dtype=np.float32)}) / 200

    ram_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    gmac = {name: round(rate / 1e9, 3) for name, rate in rates.items()}
    return device_from_dict(
        {
            "name": "host",
            "description": "this machine, measured with onnxruntime",
            "compute": {**{f"{k}_gmac_per_s": v for k, v in gmac.items()}, "per_node_overhead_ms": round(overhead * 1000, 4),
                        "dense_conv_full_channels": round(full_channels, 1)},
            "memory": {"bandwidth_gb_per_s": round(bandwidth / 1e9, 3), "ram_gb": ram_bytes / 1e9, "usable_fraction": 0.8},
        },
        "measured",
    )


MAX_AGE_S = 7 * 24 * 3600
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
    if measurement.get("level") != DEVICE_PART_LEVEL:
        return f"it was not measured at the device part's optimization level ({DEVICE_PART_LEVEL})"
    if now - measured_at > MAX_AGE_S:
        return "it is more than a week old"
    if int(cpus) != (os.cpu_count() or 1):
        return "it was measured on another number of cores"
    if load_then > BUSY_LOAD_PER_CORE >= load_now:
        return f"it was measured under load ({load_then:.2f} per core) and the machine is quiet now"
    return ""


def host_profile(refresh: bool = False) -> DeviceProfile:
    """This machine's profile: from the cache while it is good (see the module doc), else measured (a few
    seconds) and cached."""
    from splitnn.onnxsplit.core.atomic_files import write_text_atomic

    path = cache_path()
    if path.is_file() and not refresh:
        data = read_toml(path, "cached host profile")
        if not is_stale(data.get("measurement", {}), time.time(), load_per_core()):
            return device_from_dict(data, f"measured:{path}")
    load = load_per_core()
    profile = measure_host()
    record = (f"\n[measurement]\nmeasured_at = {time.time():.0f}\nload_per_core = {max(load, load_per_core()):.3f}\n"
              f"cpus = {os.cpu_count() or 1}\nlevel = \"{DEVICE_PART_LEVEL}\"\n")
    write_text_atomic(path, device_to_toml(profile, ["Measured by splitnn on this machine (cost_models/host.py); delete to "
                                                     "measure again."]) + record)
    return device_from_dict(read_toml(path, "cached host profile"), f"measured:{path}")

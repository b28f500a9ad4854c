"""The one way splitnn opens an onnxruntime session: CPU, quiet, options by keyword."""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from splitnn.onnxsplit.core.errors import SplitnnError

if TYPE_CHECKING:
    import onnxruntime

# The graph optimizations of the device's ORT-format part (basic: runnable by any execution provider). Every
# timing that predicts a device part runs at this level: at "all", onnxruntime's NCHWc layout makes a depthwise
# convolution faster on x86 than the part will ever run (docs/measurements.md).
DEVICE_PART_LEVEL = "basic"


def create_session(
    source: onnx.ModelProto | bytes | str | Path,
    *,
    level: str | None = None,
    prepack: bool = True,
    config: dict[str, str] | None = None,
    save_to: Path | None = None,
    threads: int | None = None,
    profile_prefix: Path | None = None,
    spin: bool = True,
    shared_arena: bool = False,
    initializers: Mapping[str, np.ndarray] | None = None,
    quiet: bool = False,
) -> "onnxruntime.InferenceSession":
    """A CPU session for a model proto, serialized model bytes, or a file (.onnx or .ort).

    level: graph optimizations, "none", "basic", "extended" or "all" (default: onnxruntime's, all);
    prepack=False skips repacking weights, which only pays off over many runs;
    save_to writes the optimized model there (with `config`, e.g. in ORT format);
    threads sets the intra-op threads (default: onnxruntime's, one per core);
    profile_prefix turns on onnxruntime's profiler, its JSON trace named from it;
    spin=False keeps idle worker threads from busy-waiting (their default), which
    matters when another process shares the cores (a bench's device and server);
    shared_arena=True takes activation memory from one arena per process, shared by
    every session that asks for it, instead of one arena per session (sessions that
    run one at a time then need the largest one's activations, not their sum);
    initializers replaces the model's weights of those names with these values (SessionOptions.add_initializer,
    which works on ORT-format files too; a name the model no longer has is ignored by onnxruntime);
    quiet: kept for its callers; every session logs only onnxruntime's fatal errors now (see `_options`).
    """
    import onnxruntime as ort

    options = _options(level, prepack, config, save_to, threads, profile_prefix, spin, shared_arena)
    if quiet:
        options.log_severity_level = 4  # fatal only
    held = [(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value)))
            for name, value in (initializers or {}).items()]
    for name, value in held:
        options.add_initializer(name, value)
    if isinstance(source, onnx.ModelProto):
        model: bytes | str = source.SerializeToString()
    else:
        model = source if isinstance(source, bytes) else str(source)
    if not isinstance(model, str):
        return _holding(ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]), held)
    try:
        return _holding(ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]), held)
    except Exception as exc:  # onnxruntime's own exception types share no base class but Exception
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SplitnnError(f"onnxruntime cannot load '{model}' ({first[:300]}): the file or its weights are damaged "
                           "or incomplete; copy the folder again or partition again") from None


def _holding(session: Any, values: list[Any]) -> Any:
    """`session`, keeping the OrtValues it was given as initializers alive as long as it lives (onnxruntime
    reads their buffers in place)."""
    if values:
        session.splitnn_initializers = values
    return session


def _options(level: str | None, prepack: bool, config: dict[str, str] | None, save_to: Path | None,
             threads: int | None, profile_prefix: Path | None, spin: bool,
             shared_arena: bool) -> "onnxruntime.SessionOptions":
    """The session options create_session's keywords ask for (see there)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Fatal errors only: a failed load or run reaches the caller as an exception that holds the same message, which
    # splitnn reports in its own one line (a traceback, for a bug); onnxruntime's coloured `[E:onnxruntime:...]` copy
    # of it came first on stderr (issue 30, item 9). Warnings were already off.
    options.log_severity_level = 4
    if level is not None:
        levels = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options.graph_optimization_level = levels[level]
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    if shared_arena:
        _register_shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


_arena_lock = threading.Lock()
_arena_registered = False


def _register_shared_arena() -> None:
    """Register onnxruntime's process-wide CPU arena, once per process."""
    global _arena_registered
    import onnxruntime as ort

    with _arena_lock:
        if _arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
        _arena_registered = True


def median_run_seconds(session: "onnxruntime.InferenceSession", feeds: dict[str, Any], runs: int = 7, warmup: int = 1) -> float:
    """Median wall time of `runs` runs of `session` on `feeds`, after `warmup` untimed runs."""
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# onnxruntime names an input's element type as a string ("tensor(float)"), numpy by its own names.
_ORT_TYPES = {"float": np.float32, "double": np.float64, "bool": np.bool_}


def ort_numpy_dtype(ort_type: str) -> np.dtype:
    """The numpy dtype of an onnxruntime input or output type such as 'tensor(float)' or 'tensor(int64)'."""
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype(_ORT_TYPES.get(name, name))

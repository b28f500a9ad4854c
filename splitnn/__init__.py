"""splitnn: partition ONNX models between a device and a server, or into tiles across a cluster of boards.

The Python API (splitnn.onnxsplit.api), importable from here:

    import splitnn
    print(splitnn.analyze("model.onnx").totals.macs)

The names load on first use, so that `import splitnn` (and the command line, which lives under it) starts fast.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Analysis", "SplitnnError", "analyze", "device", "load_link", "load_plan", "load_profile",
           "min_cut_partitions", "partition", "run_bench", "serve", "update_weights", "write_node_csv"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from splitnn.onnxsplit import api

        return getattr(api, name)
    raise AttributeError(f"module 'splitnn' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
